import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { SigningError, type SigningErrorCode } from './errors.js';
import { auxBytes, checkBatch, type Aux } from './args.js';
import type { SchnorrBackend } from './schnorr.js';

interface Addon {
  xonlyPublicKey(secretKey: Uint8Array): Buffer;
  signBatch(secretKey: Uint8Array, messages: Uint8Array, aux: Uint8Array | null): Buffer;
  verifyBatch(signatures: Uint8Array, messages: Uint8Array, pubkeys: Uint8Array): Buffer;
  sign(secretKey: Uint8Array, message: Uint8Array, aux: Uint8Array | null): Buffer;
  verify(signature: Uint8Array, message: Uint8Array, pubkey: Uint8Array): boolean;
  taggedHash(tag: Uint8Array, data: Uint8Array): Buffer;
  /** The calling thread's CPU time, ns (clock_gettime(CLOCK_THREAD_CPUTIME_ID)). */
  threadCpuNs(): number;
}

// dist/src/signing/native.js → <repo>/build/Release
const ADDON_PATH = fileURLToPath(new URL('../../../build/Release/pegout_secp256k1.node', import.meta.url));

const CODES: Record<string, SigningErrorCode> = {
  ERR_ARG_TYPE: 'invalid_argument',
  ERR_ARG_COUNT: 'invalid_argument',
  ERR_BUFFER_LENGTH: 'invalid_length',
  ERR_SECRET_KEY: 'invalid_secret_key',
  ERR_DETACHED: 'detached_buffer',
  ERR_SHARED: 'shared_buffer',
};

/** The addon's errors carry a `code`; ours carry the signing domain's code for the same fault. */
function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof SigningError) throw err;
    const e = err as Error & { code?: string };
    throw new SigningError(CODES[e.code ?? ''] ?? 'native_failure', e.message, { nativeCode: e.code }, { cause: err });
  }
}

const encoder = new TextEncoder();

function wrap(addon: Addon): SchnorrBackend {
  return {
    name: 'native',
    xonlyPublicKey: (secretKey) => call(() => addon.xonlyPublicKey(secretKey)),
    signBatch: (secretKey: Uint8Array, messages: Uint8Array, aux: Aux) =>
      call(() => addon.signBatch(secretKey, messages, auxBytes(aux, checkBatch(messages, 'messages', 32)))),
    verifyBatch: (signatures, messages, pubkeys) => call(() => addon.verifyBatch(signatures, messages, pubkeys)),
    sign: (secretKey, message, aux) => call(() => addon.sign(secretKey, message, auxBytes(aux, 1))),
    verify: (signature, message, pubkey) => call(() => addon.verify(signature, message, pubkey)),
    taggedHash: (tag, data) => call(() => addon.taggedHash(encoder.encode(tag), data)),
  };
}

export function loadNativeBackend():
  { backend: SchnorrBackend; reason?: undefined } | { backend?: undefined; reason: string } {
  if (!existsSync(ADDON_PATH)) return { reason: `${ADDON_PATH} is not built` };
  try {
    return { backend: wrap(createRequire(import.meta.url)(ADDON_PATH) as Addon) };
  } catch (err) {
    return { reason: `loading ${ADDON_PATH} failed: ${(err as Error).message}` };
  }
}

/**
 * The calling thread's CPU clock in nanoseconds, from the addon whatever the Schnorr backend (the
 * stage counters' clock, src/metrics/stages.ts); undefined when the addon is not built or predates it.
 */
export function loadThreadCpuClock(): (() => number) | undefined {
  if (!existsSync(ADDON_PATH)) return undefined;
  try {
    const addon = createRequire(import.meta.url)(ADDON_PATH) as Partial<Addon>;
    return typeof addon.threadCpuNs === 'function' ? addon.threadCpuNs : undefined;
  } catch {
    return undefined;
  }
}
