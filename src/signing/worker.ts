import { move, transferableSymbol, valueSymbol, workerData } from 'piscina';
import { measure, type TaskTime } from '../metrics/stages.js';
import { templateSighashes, type ScriptPathTemplate } from '../bitcoin/sighash.js';
import { detachOneBuffer, type Aux } from './args.js';
import { SigningError, type SigningErrorCode } from './errors.js';
import { repeatKey, selectBackend } from './schnorr.js';

// A pool worker. The member key arrives once, in workerData, when the worker starts; tasks
// carry an input range with the transaction's sighash template, or that range's sighashes once
// they are known.

interface WorkerSetup {
  readonly secretKey: Uint8Array | null;
  readonly backend: 'native' | 'js';
}

const setup = workerData as WorkerSetup;
detachOneBuffer();
const backend = selectBackend(setup.backend);

/** Inputs [from, to) of a transaction, with its sighash template made by the caller. */
export interface InputRange {
  readonly template: ScriptPathTemplate;
  readonly from: number;
  readonly to: number;
}

/**
 * What a task signs or checks: the range's sighashes, hashed here from the transaction's template
 * the first time and then known to the caller (32 bytes a message).
 */
export type Messages = { readonly range: InputRange } | { readonly sighashes: Uint8Array<ArrayBuffer> };

export type SignTask = Messages & {
  readonly kind: 'sign';
  readonly aux: Exclude<Aux, Uint8Array>;
};

export type VerifyTask = Messages & {
  readonly kind: 'verify';
  readonly pubkey: Uint8Array;
  /** 64 bytes a message */
  readonly signatures: Uint8Array;
};

/**
 * What a task returns: signatures (64 bytes an input) or verdicts (a byte an input), the sighashes
 * when it hashed them, and this thread's CPU for it.
 */
export interface TaskDone {
  readonly bytes: Uint8Array;
  readonly sighashes?: Uint8Array;
  /** The task's time on this worker (src/metrics/stages.ts). */
  readonly time: TaskTime;
}

/** A view into a larger buffer is copied, so that only its own bytes are transferred. */
function own(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
}

/** The task's messages; `hashed` when this task computed them, so the caller can keep them. */
function messagesOf(task: Messages): { sighashes: Uint8Array; hashed?: Uint8Array } {
  if ('sighashes' in task) return { sighashes: task.sighashes };
  const r = task.range;
  const sighashes = own(templateSighashes(r.template, r.from, r.to));
  return { sighashes, hashed: sighashes };
}

function compute(task: SignTask | VerifyTask): Pick<TaskDone, 'bytes' | 'sighashes'> {
  const { sighashes, hashed } = messagesOf(task);
  if (task.kind === 'sign') {
    if (!setup.secretKey)
      throw new SigningError('invalid_argument', 'this pool was started without a member key; it can only verify');
    return { bytes: own(backend.signBatch(setup.secretKey, sighashes, task.aux)), sighashes: hashed };
  }
  const verdicts = backend.verifyBatch(task.signatures, sighashes, repeatKey(task.pubkey, sighashes.length / 32));
  return { bytes: own(verdicts), sighashes: hashed };
}

/**
 * A task's SigningError, handed back as a value: an error thrown across the thread boundary arrives
 * as a plain Error, its code lost, and the pool must tell a `sign_fault` from any other failure.
 */
export interface TaskFailed {
  readonly failed: { readonly code: SigningErrorCode; readonly message: string };
}

export type TaskResult = TaskDone | TaskFailed;

/** Hands the bytes back by transfer, not copy, with the task's CPU time. */
export default function run(task: SignTask | VerifyTask): TaskResult {
  let measured;
  try {
    measured = measure(() => compute(task));
  } catch (err) {
    if (err instanceof SigningError) return { failed: { code: err.code, message: err.message } };
    throw err;
  }
  const { value, ns, wallNs } = measured;
  const buffers = value.sighashes ? [value.bytes.buffer, value.sighashes.buffer] : [value.bytes.buffer];
  const result = {
    [transferableSymbol]: buffers,
    [valueSymbol]: { ...value, time: { ns, wallNs } } satisfies TaskDone,
  };
  return move(result as never) as unknown as TaskResult;
}

/** Runs once this module has loaded in the worker: the pool waits for it before it terminates the worker. */
export function loaded(): true {
  return true;
}
