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

/**
 * Whether a payment's outputs commit to exactly `requestIds` in this order, with an output for
 * each: how ids that someone names for a transaction (a peer's frame, this member's own signature
 * record) are checked against its own bytes before they are believed.
 */
export function namesCommitted(outputs: readonly TxOutput[], requestIds: readonly string[]): boolean {
  const commitment = outputs[0];
  return (
    commitment !== undefined &&
    outputs.length >= requestIds.length + 1 &&
    commitsTo(commitment.scriptPubKey, requestIds)
  );
}

/** A request that a confirmed payment may pay: what this member or an auditor knows of it. */
export interface CandidateRequest {
  readonly id: string;
  readonly scriptPubKey: Uint8Array;
  readonly sats: bigint;
}

const hex = (script: Uint8Array): string =>
  Buffer.from(script.buffer, script.byteOffset, script.length).toString('hex');

/**
 * Which requests a payment's commitment names, read from the transaction alone (a member that
 * missed the payment, or an auditor): output k + 1 must pay a candidate's script exactly
 * `sats − share`, one share for all, and the hash over the chosen ids must equal output 0.
 * Assignments in ascending id order (what an honest proposer builds) are tried first, then any;
 * at most `maxTries` complete assignments are hashed. Undefined when none matches.
 */
export function matchCommitment(
  outputs: readonly TxOutput[],
  candidates: readonly CandidateRequest[],
  maxTries = 10_000,
): string[] | undefined {
  const committed = outputs[0] && readCommitment(outputs[0].scriptPubKey);
  if (!committed) return undefined;
  // indexed, so that each share costs a lookup an output, not a pass over every candidate: anyone
  // can burn many requests to one address with amounts of their choosing
  const byPayout = new Map<string, CandidateRequest[]>();
  const byScript = new Map<string, bigint[]>();
  const add = <T>(map: Map<string, T[]>, key: string, value: T): void => {
    const list = map.get(key);
    if (list) list.push(value);
    else map.set(key, [value]);
  };
  for (const c of [...candidates].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    const script = hex(c.scriptPubKey);
    add(byPayout, `${script}:${c.sats}`, c);
    add(byScript, script, c.sats);
  }
  let tries = 0;
  /** An assignment of one candidate an option list, each used once; ascending: ids in increasing order. */
  const search = (options: readonly CandidateRequest[][], ascending: boolean): string[] | undefined => {
    const chosen: string[] = [];
    const used = new Set<string>();
    const step = (i: number): boolean => {
      if (i === options.length) return ++tries <= maxTries && equal(requestCommitment(chosen), committed);
      for (const c of options[i]!) {
        if (used.has(c.id) || (ascending && i > 0 && c.id <= chosen[i - 1]!)) continue;
        used.add(c.id);
        chosen.push(c.id);
        if (step(i + 1)) return true;
        chosen.pop();
        used.delete(c.id);
        if (tries >= maxTries) return false;
      }
      return false;
    };
    return step(0) ? chosen : undefined;
  };
  // the last output is either a peg-out or the change
  for (const k of [outputs.length - 1, outputs.length - 2]) {
    if (k < 1) continue;
    const payouts = outputs.slice(1, k + 1).map((o) => ({ script: hex(o.scriptPubKey), value: o.value }));
    const first = payouts[0]!;
    const amounts = byScript.get(first.script) ?? [];
    const shares = new Set(amounts.filter((sats) => sats >= first.value).map((sats) => sats - first.value));
    for (const share of shares) {
      const options: CandidateRequest[][] = [];
      for (const o of payouts) {
        const list = byPayout.get(`${o.script}:${o.value + share}`);
        if (!list) break;
        options.push(list);
      }
      if (options.length < payouts.length) continue;
      // ids in increasing order first (what a proposer builds), then any order: a merge commits its
      // rivals' requests in their order, and nothing makes a proposer sort them
      const found = search(options, true) ?? search(options, false);
      if (found) return found;
      if (tries >= maxTries) return undefined;
    }
  }
  return undefined;
}
