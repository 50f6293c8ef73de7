import { move, transferableSymbol, valueSymbol, workerData } from 'piscina';
import { measure, type TaskTime } from '../metrics/stages.js';
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

/** What a task returns: signatures (64 bytes an input) or verdicts (a byte an input), and this thread's CPU for it. */
export interface TaskResult {
  readonly bytes: Uint8Array;
  /** The task's time on this worker (src/metrics/stages.ts). */
  readonly time: TaskTime;
}

/** A view into a larger buffer is copied, so that only its own bytes are transferred. */
function own(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
}

function compute(task: SignTask | VerifyTask): Uint8Array {
  const sighashes = scriptPathSighashRange(task.pre, task.tx, task.prevouts, task.leafHash, task.from, task.to);
  if (task.kind === 'sign') {
    if (!setup.secretKey) throw new Error('this pool was started without a member key; it can only verify');
    return own(backend.signBatch(setup.secretKey, sighashes, task.aux));
  }
  return own(backend.verifyBatch(task.signatures, sighashes, repeatKey(task.pubkey, task.to - task.from)));
}

/** Hands the bytes back by transfer, not copy, with the task's CPU time. */
export default function run(task: SignTask | VerifyTask): TaskResult {
  const { value: bytes, ns, wallNs } = measure(() => compute(task));
  const result = {
    [transferableSymbol]: [bytes.buffer],
    [valueSymbol]: { bytes, time: { ns, wallNs } } satisfies TaskResult,
  };
  return move(result as never) as unknown as TaskResult;
}
