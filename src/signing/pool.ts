import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { Federation } from '../bitcoin/federation.js';
import * as stages from '../metrics/stages.js';
import { precomputeSighash, scriptPathTemplate } from '../bitcoin/sighash.js';
import type { Prevout, Transaction } from '../bitcoin/tx.js';
import type { VerifyFn } from './collector.js';
import { detachOneBuffer } from './args.js';
import { SigningError } from './errors.js';
import { schnorrBackend } from './schnorr.js';
import type { Messages, SignTask, TaskDone, TaskResult, VerifyTask } from './worker.js';

export interface SigningPoolOptions {
  /** The member key, loaded into each worker once. Omit for a verify-only pool. */
  readonly secretKey?: Uint8Array;
  /** Worker threads; default: the machine's core count. */
  readonly size?: number;
  /** Backend for the workers; default: the process's choice (native unless forced to js). */
  readonly backend?: 'native' | 'js';
  /** Inputs below which a transaction is not split further; splitting has a per-task cost. */
  readonly minChunk?: number;
  /**
   * Called when a worker made a signature that failed its own verification (`sign_fault`, see
   * selfChecking in schnorr.ts), before the call that asked for it fails: the member pauses, since
   * a fault attack needs the signer to go on signing.
   */
  readonly onSignFault?: (err: SigningError) => void;
  /** The worker module; default ours. Tests run one whose signing faults. */
  readonly worker?: string;
}

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

/** The stages a pool's work is counted to. */
type PoolStage = 'sighash_sign' | 'verify';

/**
 * Bytes [from, to) in an ArrayBuffer of their own: transferring it detaches nothing of the caller's,
 * and a view is never cloned with the rest of the (possibly pooled) buffer behind it.
 */
function ownCopy(bytes: Uint8Array, from: number, to: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(bytes.subarray(from, to));
}

/** What a task's messages hand over rather than copy: known sighashes are a copy of their own. */
function transfers(messages: Messages): ArrayBuffer[] {
  return 'sighashes' in messages ? [messages.sighashes.buffer] : [];
}

/** A transaction's sighashes, for the prevouts they were computed with. */
interface KnownSighashes {
  readonly prevouts: readonly Prevout[];
  readonly bytes: Buffer;
}

/**
 * Sighash + Schnorr on worker threads, a transaction split into one input range per worker. The
 * first task on a transaction hashes its inputs there, from the transaction's sighash template, and
 * hands the sighashes back with its result; they are kept while the transaction object lives, for
 * the prevouts they were computed with: a member checks every peer's signatures on the same payment,
 * and each check would otherwise hash every input again. Later tasks carry 32 bytes an input.
 */
export class SigningPool {
  private readonly pool: Piscina;
  private readonly minChunk: number;
  private readonly onSignFault: ((err: SigningError) => void) | undefined;
  // keyed by the objects, not an id: transactions are immutable values and the entry goes with them,
  // and a transaction or prevouts a peer sent are objects of their own, never served ours
  private readonly sighashes = new WeakMap<Transaction, KnownSighashes>();
  private closed = false;
  /** Settles when every worker has loaded its module (or failed to). */
  private readonly loaded: Promise<unknown>;

  constructor(
    private readonly federation: Federation,
    options: SigningPoolOptions = {},
  ) {
    const size = options.size ?? availableParallelism();
    if (!Number.isInteger(size) || size < 1)
      throw new SigningError('invalid_argument', `pool size must be a positive integer, got ${size}`);
    this.minChunk = options.minChunk ?? 32;
    // NaN would split a transaction into no ranges at all: nothing signed, nothing verified, all valid
    if (!Number.isInteger(this.minChunk) || this.minChunk < 1)
      throw new SigningError('invalid_argument', `minChunk must be a positive integer, got ${this.minChunk}`);
    detachOneBuffer();
    this.onSignFault = options.onSignFault;
    this.pool = new Piscina({
      filename: options.worker ?? WORKER,
      minThreads: size,
      maxThreads: size,
      idleTimeout: Number.MAX_SAFE_INTEGER,
      workerData: { secretKey: options.secretKey ?? null, backend: options.backend ?? schnorrBackend().name },
    });
    // one task a worker, each taken by an idle one: a worker answers once its module has loaded.
    // Node 20 aborts the whole process when a worker is terminated while still loading its module
    // (a V8 fatal error), so destroy waits for these
    this.loaded = Promise.allSettled(Array.from({ length: size }, () => this.pool.run(null, { name: 'loaded' })));
  }

  get size(): number {
    return this.pool.maxThreads;
  }

  private ranges(inputs: number): [number, number][] {
    const chunks = Math.max(1, Math.min(this.pool.maxThreads, Math.floor(inputs / this.minChunk)));
    const per = Math.ceil(inputs / chunks);
    const out: [number, number][] = [];
    for (let from = 0; from < inputs; from += per) out.push([from, Math.min(inputs, from + per)]);
    return out;
  }

  private check(): void {
    if (this.closed) throw new SigningError('pool_closed', 'the signing pool has been destroyed');
  }

  /** Each range's messages: its known sighashes, or what a worker needs to hash them. */
  private messagesOf(tx: Transaction, prevouts: readonly Prevout[]): (from: number, to: number) => Messages {
    const known = this.sighashes.get(tx);
    if (known && known.prevouts === prevouts) {
      return (from, to) => ({ sighashes: ownCopy(known.bytes, from * 32, to * 32) });
    }
    // the template, not the transaction: a structured clone of its inputs and prevouts cost this
    // thread more than the worker's hashing (their byte arrays are often views into pooled 8 KB slabs,
    // each cloned whole)
    const template = scriptPathTemplate(precomputeSighash(tx, prevouts), tx, this.federation.leafHash);
    return (from, to) => ({ range: { template, from, to } });
  }

  /**
   * One task per input range, handed out on this thread; the results' bytes in order. This thread's
   * part and the workers' CPU are counted to `stage`; sighashes the tasks computed are kept.
   */
  private async inRanges(
    stage: PoolStage,
    tx: Transaction,
    prevouts: readonly Prevout[],
    task: (messages: Messages, from: number, to: number) => Promise<TaskResult>,
  ): Promise<Buffer> {
    const tasks = stages.time(stage, () => {
      const messages = this.messagesOf(tx, prevouts);
      return this.ranges(tx.inputs.length).map(([from, to]) => task(messages(from, to), from, to));
    });
    const results = await Promise.all(tasks);
    for (const r of results) {
      if (!('failed' in r)) continue;
      const err = new SigningError(r.failed.code, r.failed.message);
      if (err.code === 'sign_fault') this.onSignFault?.(err);
      throw err;
    }
    const parts = results as TaskDone[];
    return stages.time(stage, () => {
      for (const p of parts) stages.addWorkerTime(stage, p.time);
      const hashed = parts.flatMap((p) => (p.sighashes ? [p.sighashes] : []));
      if (hashed.length === parts.length) this.sighashes.set(tx, { prevouts, bytes: Buffer.concat(hashed) });
      return Buffer.concat(parts.map((p) => p.bytes));
    });
  }

  /** This member's signatures for every input, concatenated (64 bytes each). */
  async signTransaction(
    tx: Transaction,
    prevouts: readonly Prevout[],
    aux: 'random' | 'zero' = 'random',
  ): Promise<Uint8Array> {
    this.check();
    return this.inRanges('sighash_sign', tx, prevouts, (messages) =>
      this.pool.run({ kind: 'sign', ...messages, aux } satisfies SignTask, { transferList: transfers(messages) }),
    );
  }

  /** One byte per input, 1 when that input's signature by `pubkey` is valid (a collector VerifyFn). */
  readonly verifyTransaction: VerifyFn = async (tx, prevouts, pubkey, signatures) => {
    this.check();
    if (signatures.length !== tx.inputs.length * 64) {
      throw new SigningError(
        'wrong_signature_count',
        `need ${tx.inputs.length} signatures (${tx.inputs.length * 64} bytes), got ${signatures.length} bytes`,
      );
    }
    return this.inRanges('verify', tx, prevouts, (messages, from, to) => {
      const chunk = ownCopy(signatures, from * 64, to * 64);
      // the key in a buffer of its own too: a key from Buffer.from(hex) is a view into an 8 KB slab
      const key = ownCopy(pubkey, 0, pubkey.length);
      const task: VerifyTask = { kind: 'verify', ...messages, pubkey: key, signatures: chunk };
      return this.pool.run(task, { transferList: [...transfers(messages), chunk.buffer, key.buffer] });
    });
  };

  async destroy(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.loaded;
    await this.pool.destroy();
  }
}
