import { concat, equal, fromHex } from '../bitcoin/bytes.js';
import { taggedHash } from '../bitcoin/hash.js';
import { parseRequestId } from '../evm/requests.js';

// The payment commitment (SPEC §2, docs/payment-format.md): output 0 of every federation payment
// is OP_RETURN <32 bytes> over the requests it pays, in output order. Which request an output
// pays is then a fact of the transaction's own bytes (its txid commits to it), read the same
// way by every member and by any auditor, never a label a proposer hands each member.

export const COMMITMENT_TAG = 'alys-pegout/requests';
const OP_RETURN = 0x6a;
const PUSH_32 = 0x20;

/** taggedHash("alys-pegout/requests", txHash_1 ‖ u32le(ordinal_1) ‖ … ) over canonical request ids. */
export function requestCommitment(requestIds: readonly string[]): Uint8Array {
  const parts = requestIds.map((id) => {
    const { txHash, ordinal } = parseRequestId(id);
    const item = new Uint8Array(36);
    item.set(fromHex(txHash.slice(2)), 0);
    new DataView(item.buffer).setUint32(32, ordinal, true);
    return item;
  });
  return taggedHash(COMMITMENT_TAG, concat(parts));
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
