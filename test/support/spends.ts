import { randomBytes } from 'node:crypto';
import { toHex } from '../../src/bitcoin/bytes.js';
import type { Federation } from '../../src/bitcoin/federation.js';
import type { Prevout, Transaction } from '../../src/bitcoin/tx.js';

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
