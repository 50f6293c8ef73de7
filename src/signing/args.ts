import { SigningError } from './errors.js';

// Argument checks shared by the backends: the addon does the same checks in C, with the same codes.

export type Aux = 'random' | 'zero' | Uint8Array;

const SIZES = { secretKey: 32, message: 32, signature: 64, pubkey: 32, aux: 32 } as const;

let detachedOne = false;

/**
 * Detaches a throwaway ArrayBuffer, once per thread, before the thread's code is hot. V8 compiles
 * typed-array code on the promise that no ArrayBuffer of the thread was ever detached; the pool's
 * first transfer (its sighashes and results move between threads, not copied) breaks the promise
 * and throws away every function compiled on it at once. A bench:e2e member traced with
 * --trace-deopt lost about 45 (msgpack, the store's puts, address and script code) at its first
 * signing and compiled them again during the next payments; detached first, they are compiled once.
 */
export function detachOneBuffer(): void {
  if (detachedOne) return;
  detachedOne = true;
  const spare = new ArrayBuffer(1);
  structuredClone(spare, { transfer: [spare] });
}

export function checkBytes(value: unknown, name: string): Uint8Array {
  if (!(value instanceof Uint8Array))
    throw new SigningError(
      'invalid_argument',
      `${name} must be a Uint8Array or Buffer, got ${value === null ? 'null' : typeof value}`,
    );
  if (typeof SharedArrayBuffer === 'function' && value.buffer instanceof SharedArrayBuffer) {
    // another thread may write it while it is read: see native/secp256k1_addon.c get_bytes
    throw new SigningError(
      'shared_buffer',
      `${name} is backed by a SharedArrayBuffer, which another thread can change while it is read; pass a copy`,
    );
  }
  if ((value.buffer as ArrayBuffer & { detached?: boolean }).detached === true) {
    throw new SigningError(
      'detached_buffer',
      `${name} is backed by a detached ArrayBuffer (it was transferred); pass a live buffer`,
    );
  }
  return value;
}

export function checkExact(value: unknown, name: keyof typeof SIZES): Uint8Array {
  const bytes = checkBytes(value, name);
  if (bytes.length !== SIZES[name])
    throw new SigningError('invalid_length', `${name} must be exactly ${SIZES[name]} bytes, got ${bytes.length}`);
  return bytes;
}

/** Checks a batch buffer of `unit`-byte items and returns the item count. */
export function checkBatch(value: unknown, name: string, unit: number): number {
  const bytes = checkBytes(value, name);
  if (bytes.length === 0 || bytes.length % unit !== 0)
    throw new SigningError(
      'invalid_length',
      `${name} must be a non-empty multiple of ${unit} bytes, got ${bytes.length}`,
    );
  return bytes.length / unit;
}

/** Resolves the aux argument into N·32 bytes, or null for zero aux. */
export function auxBytes(aux: Aux, count: number): Uint8Array | null {
  if (aux === 'zero') return null;
  if (aux === 'random') return new Uint8Array(crypto.getRandomValues(new Uint8Array(count * 32)));
  const n = checkBatch(aux, 'aux', 32);
  if (n !== count)
    throw new SigningError(
      'invalid_length',
      `aux must hold 32 bytes per message: ${count} messages need ${count * 32} bytes, got ${aux.length}`,
    );
  return aux;
}
