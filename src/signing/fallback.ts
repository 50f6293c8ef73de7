import { signSchnorr, verifySchnorr, xOnlyPointFromScalar } from '@bitcoinerlab/secp256k1';
import { schnorr } from '@noble/curves/secp256k1.js';
import { taggedHash } from '../bitcoin/hash.js';
import { SigningError } from './errors.js';
import { auxBytes, checkBatch, checkBytes, checkExact, type Aux } from './args.js';
import type { SchnorrBackend } from './schnorr.js';

const ZERO_AUX = new Uint8Array(32);

function secretKeyOf(value: unknown): Uint8Array {
  const secretKey = checkExact(value, 'secretKey');
  let valid = false;
  try {
    xOnlyPointFromScalar(secretKey);
    valid = true;
  } catch {
    // reported below, without echoing the key
  }
  if (!valid)
    throw new SigningError(
      'invalid_secret_key',
      'secretKey is not a valid secp256k1 secret key (it must be in [1, n-1], n the curve order)',
    );
  return secretKey;
}

/** The same contract as the addon, in pure JS (@bitcoinerlab/secp256k1 over @noble/curves). */
export const fallbackBackend: SchnorrBackend = {
  name: 'js',
  xonlyPublicKey: (secretKey) => xOnlyPointFromScalar(secretKeyOf(secretKey)),
  signBatch(secretKey: Uint8Array, messages: Uint8Array, aux: Aux): Uint8Array {
    const n = checkBatch(messages, 'messages', 32);
    const auxes = auxBytes(aux, n);
    const key = secretKeyOf(secretKey);
    const out = new Uint8Array(n * 64);
    for (let i = 0; i < n; i++) {
      const e = auxes ? auxes.subarray(i * 32, i * 32 + 32) : ZERO_AUX;
      out.set(signSchnorr(messages.subarray(i * 32, i * 32 + 32), key, e), i * 64);
    }
    return out;
  },
  verifyBatch(signatures: Uint8Array, messages: Uint8Array, pubkeys: Uint8Array): Uint8Array {
    const n = checkBatch(messages, 'messages', 32);
    const sigs = checkBatch(signatures, 'signatures', 64);
    const keys = checkBatch(pubkeys, 'pubkeys', 32);
    if (sigs !== n || keys !== n)
      throw new SigningError(
        'invalid_length',
        `batch sizes differ: ${sigs} signatures, ${n} messages, ${keys} pubkeys`,
      );
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      try {
        out[i] = verifySchnorr(
          messages.subarray(i * 32, i * 32 + 32),
          pubkeys.subarray(i * 32, i * 32 + 32),
          signatures.subarray(i * 64, i * 64 + 64),
        )
          ? 1
          : 0;
      } catch {
        out[i] = 0; // a key off the curve is an invalid signature, as in BIP340
      }
    }
    return out;
  },
  // @bitcoinerlab/secp256k1 takes only 32-byte messages; the @noble/curves it wraps takes any.
  sign(secretKey: Uint8Array, message: Uint8Array, aux: Aux): Uint8Array {
    const msg = checkBytes(message, 'message');
    const key = secretKeyOf(secretKey);
    return schnorr.sign(msg, key, auxBytes(aux, 1) ?? ZERO_AUX);
  },
  verify(signature: Uint8Array, message: Uint8Array, pubkey: Uint8Array): boolean {
    const sig = checkExact(signature, 'signature');
    const msg = checkBytes(message, 'message');
    const key = checkExact(pubkey, 'pubkey');
    try {
      return schnorr.verify(sig, msg, key);
    } catch {
      return false; // a key off the curve is an invalid signature, as in BIP340
    }
  },
  taggedHash: (tag, data) => taggedHash(tag, data),
};
