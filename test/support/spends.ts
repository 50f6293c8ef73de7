import { randomBytes } from 'node:crypto';
import { encodeAddress } from '../../src/bitcoin/address.js';
import { equal, fromHex, toHex } from '../../src/bitcoin/bytes.js';
import type { Federation } from '../../src/bitcoin/federation.js';
import { parseTx, type Prevout, type Transaction } from '../../src/bitcoin/tx.js';
import { commitmentScript, readCommitment } from '../../src/wallet/commitment.js';

/** An unsigned spend of `inputs` federation outputs (made-up outpoints) to one P2TR output. */
export function federationSpend(
  federation: Federation,
  inputs: number,
  value = 100_000n,
): { tx: Transaction; prevouts: Prevout[] } {
  const tx: Transaction = {
    version: 2,
    locktime: 0,
    inputs: Array.from({ length: inputs }, (_, i) => ({
      txid: toHex(randomBytes(32)),
      vout: i % 4,
      sequence: 0xfffffffd,
      scriptSig: new Uint8Array(0),
      witness: [],
    })),
    outputs: [{ value: value * BigInt(inputs) - 10_000n, scriptPubKey: federation.scriptPubKey }],
  };
  return { tx, prevouts: tx.inputs.map(() => ({ value, scriptPubKey: federation.scriptPubKey })) };
}

/**
 * `pegout sign`'s `--to` for a spend of `federation`: the addresses of its outputs that pay neither
 * the federation nor a request commitment, as an operator states them.
 */
export function statedPayees(txHex: string, federation: Federation): string[] {
  const addresses = parseTx(fromHex(txHex))
    .outputs.filter((o) => !equal(o.scriptPubKey, federation.scriptPubKey) && !readCommitment(o.scriptPubKey))
    .map((o) => encodeAddress(o.scriptPubKey, federation.network));
  return ['--to', ...addresses];
}

/**
 * `payment`'s transaction with its requests committed and paid in reverse id order: the same
 * inputs, outputs and fee, what a merge or a malicious proposer may make (nothing requires the order).
 */
export function committedInReverse(payment: { tx: Transaction; requestIds: readonly string[] }): {
  tx: Transaction;
  requestIds: string[];
} {
  const k = payment.requestIds.length;
  const requestIds = [...payment.requestIds].reverse();
  const outputs = payment.tx.outputs;
  return {
    tx: {
      ...payment.tx,
      outputs: [
        { value: 0n, scriptPubKey: commitmentScript(requestIds) },
        ...outputs.slice(1, k + 1).reverse(),
        ...outputs.slice(k + 1),
      ],
    },
    requestIds,
  };
}
