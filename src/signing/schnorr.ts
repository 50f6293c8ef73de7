import type { Aux } from './args.js';
import { SigningError } from './errors.js';
import { fallbackBackend } from './fallback.js';
import { loadNativeBackend } from './native.js';

export type { Aux } from './args.js';

/**
 * BIP340 Schnorr, in batches over contiguous buffers: N messages of 32 bytes, N signatures of
 * 64 bytes, N x-only keys of 32 bytes, laid end to end. One call signs or checks a whole
 * transaction's inputs, so the native backend crosses into C once per batch, not per input.
 * `sign`/`verify` take one message of any length, as BIP340 allows (link proofs, vectors).
 */
export interface SchnorrBackend {
  readonly name: 'native' | 'js';
  xonlyPublicKey(secretKey: Uint8Array): Uint8Array;
  /** 'zero' aux makes signatures deterministic (tests, vectors); production uses 'random'. */
  signBatch(secretKey: Uint8Array, messages: Uint8Array, aux: Aux): Uint8Array;
  /** One byte per item: 1 valid, 0 invalid (an invalid key or signature is just invalid). */
  verifyBatch(signatures: Uint8Array, messages: Uint8Array, pubkeys: Uint8Array): Uint8Array;
  /** One BIP340 signature over a message of any length (0 bytes included); aux as above, one of 32 bytes. */
  sign(secretKey: Uint8Array, message: Uint8Array, aux: Aux): Uint8Array;
  /** One message of any length; false for an invalid key or signature. */
  verify(signature: Uint8Array, message: Uint8Array, pubkey: Uint8Array): boolean;
  taggedHash(tag: string, data: Uint8Array): Uint8Array;
}

/** Environment variable that forces the pure-JS backend (`PEGOUT_SECP256K1=js`). */
export const BACKEND_ENV = 'PEGOUT_SECP256K1';

let chosen: SchnorrBackend | undefined;

/**
 * The process-wide backend: the native addon unless `PEGOUT_SECP256K1=js`, or when the addon
 * is not built, in which case it says so on stderr once (a silent 5× slowdown would be a trap).
 */
export function schnorrBackend(): SchnorrBackend {
  if (chosen) return chosen;
  return (chosen = selectBackend(process.env[BACKEND_ENV] || undefined));
}

/** The named backend ('native' fails loudly if the addon is missing), or the default choice. */
export function selectBackend(wanted: string | undefined): SchnorrBackend {
  if (wanted !== undefined && wanted !== 'js' && wanted !== 'native') {
    throw new SigningError(
      'invalid_argument',
      `${BACKEND_ENV} must be "native" or "js", got ${JSON.stringify(wanted)}`,
    );
  }
  if (wanted === 'js') return selfChecking(fallbackBackend);
  const native = loadNativeBackend();
  if (native.backend) return selfChecking(native.backend);
  if (wanted === 'native')
    throw new SigningError('native_failure', `${BACKEND_ENV}=native but the addon cannot be loaded: ${native.reason}`);
  process.stderr.write(
    `WARNING: native libsecp256k1 addon unavailable (${native.reason}); using the pure-JS Schnorr fallback, which is several times slower. Build it with: node scripts/build-native.mjs\n`,
  );
  return selfChecking(fallbackBackend);
}

/** One x-only key per signature, for a batch that one key signed. */
export function repeatKey(pubkey: Uint8Array, count: number): Uint8Array {
  const keys = new Uint8Array(count * 32);
  for (let i = 0; i < count; i++) keys.set(pubkey, i * 32);
  return keys;
}

function signFault(what: string): never {
  throw new SigningError(
    'sign_fault',
    `${what} does not verify under the signing key; nothing signed by this call is handed out (a fault while signing: check this machine)`,
  );
}

/**
 * The backend with every signature verified under the signer's own key before it is returned, as
 * BIP340 advises and Bitcoin Core's CKey::SignSchnorr does: a fault while signing (a flipped bit in
 * memory or a register) can yield a wrong signature from which the secret key can be computed, and
 * a signature that left this process cannot be called back. It costs a verification a signature,
 * about twice a signing.
 */
export function selfChecking(backend: SchnorrBackend): SchnorrBackend {
  return {
    ...backend,
    signBatch(secretKey, messages, aux) {
      const signatures = backend.signBatch(secretKey, messages, aux);
      const count = signatures.length / 64;
      const keys = repeatKey(backend.xonlyPublicKey(secretKey), count);
      const verdicts = backend.verifyBatch(signatures, messages, keys);
      const bad = verdicts.findIndex((ok) => ok !== 1);
      if (bad >= 0) signFault(`signature ${bad} of ${count}`);
      return signatures;
    },
    sign(secretKey, message, aux) {
      const signature = backend.sign(secretKey, message, aux);
      if (!backend.verify(signature, message, backend.xonlyPublicKey(secretKey))) signFault('the signature');
      return signature;
    },
  };
}
