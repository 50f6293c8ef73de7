import { concat, equal } from '../bitcoin/bytes.js';
import type { TxOutput } from '../bitcoin/tx.js';
import { taggedHash } from '../bitcoin/hash.js';
import { parseRequestId } from '../evm/request-id.js';

// The payment commitment (SPEC §2, docs/payment-format.md): output 0 of every federation payment
// is OP_RETURN <32 bytes> over the requests it pays, in output order. Which request an output
// pays is then a fact of the transaction's own bytes (its txid commits to it), read the same
// way by every member and by any auditor, never a label a proposer hands each member.

export const COMMITMENT_TAG = 'alys-pegout/requests';
const OP_RETURN = 0x6a;
const PUSH_32 = 0x20;

/**
 * taggedHash("alys-pegout/requests", txHash_1 ‖ u32le(ordinal_1) ‖ … ) over canonical request ids.
 * Written into one buffer: every member computes it for each payment of up to a thousand requests,
 * as proposer, validator and receiver of the finalized payment.
 */
export function requestCommitment(requestIds: readonly string[]): Uint8Array {
  const items = Buffer.alloc(36 * requestIds.length);
  for (const [i, id] of requestIds.entries()) {
    // parseRequestId has checked the hash is 0x and 64 lowercase hex digits
    const { txHash, ordinal } = parseRequestId(id);
    items.write(txHash.slice(2), 36 * i, 32, 'hex');
    items.writeUInt32LE(ordinal, 36 * i + 32);
  }
  return taggedHash(COMMITMENT_TAG, items);
}

/** `OP_RETURN <commitment>`: the script of output 0. */
export function commitmentScript(requestIds: readonly string[]): Uint8Array {
  return concat([Uint8Array.of(OP_RETURN, PUSH_32), requestCommitment(requestIds)]);
}

/** The 32 committed bytes of an output script, or undefined when it is not a commitment. */
export function readCommitment(script: Uint8Array): Uint8Array | undefined {
  return script.length === 34 && script[0] === OP_RETURN && script[1] === PUSH_32 ? script.subarray(2) : undefined;
}

/** Whether `script` commits to exactly `requestIds` in this order. */
export function commitsTo(script: Uint8Array, requestIds: readonly string[]): boolean {
  const committed = readCommitment(script);
  return committed !== undefined && equal(committed, requestCommitment(requestIds));
}

/** A request that a confirmed payment may pay: what this member or an auditor knows of it. */
export interface CandidateRequest {
  readonly id: string;
  readonly scriptPubKey: Uint8Array;
  readonly sats: bigint;
}

/**
 * Which requests a payment's commitment names, read from the transaction alone (a member that
 * missed the payment, or an auditor): output k + 1 must pay a candidate's script exactly
 * `sats − share`, one share for all, and the hash over the chosen ids must equal output 0.
 * Candidates with the same script and amount are tried in id order first (what the proposer
 * builds); at most `maxTries` complete assignments are hashed. Undefined when none matches.
 */
export function matchCommitment(
  outputs: readonly TxOutput[],
  candidates: readonly CandidateRequest[],
  maxTries = 10_000,
): string[] | undefined {
  const committed = outputs[0] && readCommitment(outputs[0].scriptPubKey);
  if (!committed) return undefined;
  const sorted = [...candidates].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  let tries = 0;
  // the last output is either a peg-out or the change
  for (const k of [outputs.length - 1, outputs.length - 2]) {
    if (k < 1) continue;
    const payouts = outputs.slice(1, k + 1);
    const first = payouts[0]!;
    const shares = new Set(
      sorted
        .filter((c) => equal(c.scriptPubKey, first.scriptPubKey) && c.sats >= first.value)
        .map((c) => c.sats - first.value),
    );
    for (const share of shares) {
      const options = payouts.map((o) =>
        sorted.filter((c) => equal(c.scriptPubKey, o.scriptPubKey) && c.sats - share === o.value),
      );
      if (options.some((list) => list.length === 0)) continue;
      const chosen: string[] = [];
      const used = new Set<string>();
      const search = (i: number): boolean => {
        if (i === options.length) return ++tries <= maxTries && equal(requestCommitment(chosen), committed);
        for (const c of options[i]!) {
          if (used.has(c.id)) continue;
          used.add(c.id);
          chosen.push(c.id);
          if (search(i + 1)) return true;
          chosen.pop();
          used.delete(c.id);
          if (tries >= maxTries) return false;
        }
        return false;
      };
      if (search(0)) return chosen;
    }
  }
  return undefined;
}
