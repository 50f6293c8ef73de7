import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { Federation } from '../bitcoin/federation.js';
import * as stages from '../metrics/stages.js';
import { precomputeSighash } from '../bitcoin/sighash.js';
import type { Prevout, Transaction } from '../bitcoin/tx.js';
import type { VerifyFn } from './collector.js';
import { SigningError } from './errors.js';
import { schnorrBackend } from './schnorr.js';
import type { SignTask, TaskResult, VerifyTask } from './worker.js';

export interface SigningPoolOptions {
  /** The member key, loaded into each worker once. Omit for a verify-only pool. */
  readonly secretKey?: Uint8Array;
  /** Worker threads; default: the machine's core count. */
  readonly size?: number;
  /** Backend for the workers; default: the process's choice (native unless forced to js). */
  readonly backend?: 'native' | 'js';
  /** Inputs below which a transaction is not split further; splitting has a per-task cost. */
  readonly minChunk?: number;
}

const WORKER = fileURLToPath(new URL('./worker.js', import.meta.url));

/**
 * The transaction as a worker needs it for SIGHASH_DEFAULT: that commits to the outputs only through
 * the precomputed shaOutputs, so they stay here (a payment's hundreds of outputs would otherwise be
 * copied to a worker for every task).
 */
/** What every task of one transaction shares. */
type SighashWork = Pick<SignTask, 'tx' | 'prevouts' | 'pre' | 'leafHash'>;

function withoutOutputs(tx: Transaction): Transaction {
  return { version: tx.version, locktime: tx.locktime, inputs: tx.inputs, outputs: [] };
}

/**
 * Sighash + Schnorr on worker threads. The per-transaction BIP341 hashes are computed once
 * here and shipped with each chunk; a transaction with many inputs is split into one input
 * range per worker, and signatures come back as transferred buffers, not copies.
 */
export class SigningPool {
  private readonly pool: Piscina;
  private readonly minChunk: number;
  private closed = false;

  constructor(
    private readonly federation: Federation,
    options: SigningPoolOptions = {},
  ) {
    const size = options.size ?? availableParallelism();
    if (!Number.isInteger(size) || size < 1)
      throw new SigningError('invalid_argument', `pool size must be a positive integer, got ${size}`);
    this.minChunk = options.minChunk ?? 32;
    this.pool = new Piscina({
      filename: WORKER,
      minThreads: size,
      maxThreads: size,
      idleTimeout: Number.MAX_SAFE_INTEGER,
      workerData: { secretKey: options.secretKey ?? null, backend: options.backend ?? schnorrBackend().name },
    });
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

  /** The tasks' bytes in order, their worker CPU counted to `stage`. */
  private static join(stage: 'sighash_sign' | 'verify', parts: readonly TaskResult[]): Buffer {
    return stages.time(stage, () =>
      Buffer.concat(
        parts.map((p) => {
          stages.addWorkerTime(stage, p.time);
          return p.bytes;
        }),
      ),
    );
  }

  /**
   * One task per input range, each with the per-transaction hashes computed once, here; this thread's part and the
   * workers' CPU are counted to `stage`.
   */
  private async inRanges(
    stage: 'sighash_sign' | 'verify',
    tx: Transaction,
    prevouts: readonly Prevout[],
    task: (work: SighashWork, from: number, to: number) => Promise<unknown>,
  ): Promise<Buffer> {
    const tasks = stages.time(stage, () => {
      const work: SighashWork = {
        tx: withoutOutputs(tx),
        prevouts,
        pre: precomputeSighash(tx, prevouts),
        leafHash: this.federation.leafHash,
      };
      return this.ranges(tx.inputs.length).map(([from, to]) => task(work, from, to) as Promise<TaskResult>);
    });
    return SigningPool.join(stage, await Promise.all(tasks));
  }

  /** This member's signatures for every input, concatenated (64 bytes each). */
  async signTransaction(
    tx: Transaction,
    prevouts: readonly Prevout[],
    aux: 'random' | 'zero' = 'random',
  ): Promise<Uint8Array> {
    this.check();
    return this.inRanges('sighash_sign', tx, prevouts, (work, from, to) =>
      this.pool.run({ kind: 'sign', ...work, from, to, aux } satisfies SignTask),
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
    return this.inRanges('verify', tx, prevouts, (work, from, to) => {
      // a copy with its own ArrayBuffer, so transferring it detaches nothing of the caller's
      const chunk = new Uint8Array(signatures.subarray(from * 64, to * 64));
      const task: VerifyTask = { kind: 'verify', ...work, from, to, pubkey, signatures: chunk };
      return this.pool.run(task, { transferList: [chunk.buffer] });
    });
  };

  async destroy(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.destroy();
  }
}
