import { move, workerData } from 'piscina';
import { scriptPathSighashRange, type SighashPrecomputed } from '../bitcoin/sighash.js';
import type { Prevout, Transaction } from '../bitcoin/tx.js';
import type { Aux } from './args.js';
import { repeatKey } from './collector.js';
import { selectBackend } from './schnorr.js';

// A pool worker. The member key arrives once, in workerData, when the worker starts; tasks
// carry only the transaction, the per-transaction hashes and an input range.

interface WorkerSetup {
  readonly secretKey: Uint8Array | null;
  readonly backend: 'native' | 'js';
}

const setup = workerData as WorkerSetup;
const backend = selectBackend(setup.backend);

export interface RangeTask {
  readonly tx: Transaction;
  readonly prevouts: readonly Prevout[];
  readonly pre: SighashPrecomputed;
  readonly leafHash: Uint8Array;
  readonly from: number;
  readonly to: number;
}

export interface SignTask extends RangeTask {
  readonly kind: 'sign';
  readonly aux: Exclude<Aux, Uint8Array>;
}

export interface VerifyTask extends RangeTask {
  readonly kind: 'verify';
  readonly pubkey: Uint8Array;
  /** (to − from) · 64 bytes */
  readonly signatures: Uint8Array;
}

/** Hands the result back by transfer; a view into a larger buffer is copied first so only it moves. */
function transfer(bytes: Uint8Array): Uint8Array {
  const own = bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
  return move(own) as Uint8Array;
}

export default function run(task: SignTask | VerifyTask): Uint8Array {
  const sighashes = scriptPathSighashRange(task.pre, task.tx, task.prevouts, task.leafHash, task.from, task.to);
  if (task.kind === 'sign') {
    if (!setup.secretKey) throw new Error('this pool was started without a member key; it can only verify');
    return transfer(backend.signBatch(setup.secretKey, sighashes, task.aux));
  }
  return transfer(backend.verifyBatch(task.signatures, sighashes, repeatKey(task.pubkey, task.to - task.from)));
}
