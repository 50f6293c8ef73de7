import { createHash, hash } from 'node:crypto';

export function sha256(...chunks: Uint8Array[]): Uint8Array {
  // one chunk (a key's address text, a transaction): the one-shot hash, without a Hash object
  if (chunks.length === 1) return new Uint8Array(hash('sha256', chunks[0]!, 'buffer'));
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return new Uint8Array(h.digest());
}

/** SHA-256 of a text's UTF-8 bytes, in lowercase hex: straight from the string, with no byte copies on the way. */
export function sha256Hex(text: string): string {
  return hash('sha256', text, 'hex');
}

export function hash256(...chunks: Uint8Array[]): Uint8Array {
  return sha256(sha256(...chunks));
}

export function hash160(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('ripemd160').update(sha256(data)).digest());
}

const tagPrefixes = new Map<string, Uint8Array>();

/** BIP340 tagged hash: sha256(sha256(tag) || sha256(tag) || data…); the tag prefix is cached. */
export function taggedHash(tag: string, ...chunks: Uint8Array[]): Uint8Array {
  let prefix = tagPrefixes.get(tag);
  if (!prefix) {
    const t = sha256(new TextEncoder().encode(tag));
    prefix = new Uint8Array(64);
    prefix.set(t, 0);
    prefix.set(t, 32);
    tagPrefixes.set(tag, prefix);
  }
  return sha256(prefix, ...chunks);
}
