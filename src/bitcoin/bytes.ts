import { BitcoinError } from './errors.js';

const HEX = /^(?:[0-9a-fA-F]{2})*$/;

/**
 * Strict hex: even length, hex digits only. `field` names the input in the error. `own`: decoded
 * straight into memory of its own. Buffer.from(hex) leaves a copy in Node's shared allocation pool,
 * in the backing store of every later small Buffer: right for a secret key, and twice as slow, so
 * only there.
 */
export function fromHex(text: string, field = 'hex', own = false): Uint8Array {
  if (typeof text !== 'string' || !HEX.test(text)) {
    const shown = typeof text === 'string' ? (text.length > 80 ? `${text.slice(0, 80)}…` : text) : typeof text;
    throw new BitcoinError('invalid_hex', `${field} must be an even-length hex string, got ${JSON.stringify(shown)}`, {
      field,
    });
  }
  if (!own) return new Uint8Array(Buffer.from(text, 'hex'));
  const bytes = new Uint8Array(text.length / 2);
  Buffer.from(bytes.buffer).write(text, 'hex');
  return bytes;
}

/** Hex of exactly `length` bytes; `own` as for fromHex. */
export function fromHexLength(text: string, length: number, field: string, own = false): Uint8Array {
  const bytes = fromHex(text, field, own);
  if (bytes.length !== length) {
    throw new BitcoinError(
      'invalid_length',
      `${field} must be ${length} bytes (${length * 2} hex characters), got ${bytes.length} bytes`,
      { field, length: bytes.length },
    );
  }
  return bytes;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex');
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  return new Uint8Array(Buffer.concat(parts));
}

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

export function compare(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b);
}

/** Byte-reversed copy: txids and block hashes are displayed reversed from their wire order. */
export function reverse(bytes: Uint8Array): Uint8Array {
  return Uint8Array.from(bytes).reverse();
}

export function compactSizeLength(n: number): number {
  return n < 0xfd ? 1 : n <= 0xffff ? 3 : n <= 0xffffffff ? 5 : 9;
}

/** Appends little-endian fields into a growing buffer; one allocation per doubling. */
export class ByteWriter {
  private buf: Buffer;
  private pos = 0;

  constructor(initialSize = 256) {
    this.buf = Buffer.allocUnsafe(initialSize);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v;
    return this;
  }

  u32(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  u64(v: bigint): this {
    this.ensure(8);
    this.buf.writeBigUInt64LE(v, this.pos);
    this.pos += 8;
    return this;
  }

  compactSize(n: number): this {
    if (n < 0xfd) return this.u8(n);
    if (n <= 0xffff) {
      this.ensure(3);
      this.buf[this.pos] = 0xfd;
      this.buf.writeUInt16LE(n, this.pos + 1);
      this.pos += 3;
      return this;
    }
    if (n <= 0xffffffff) return this.u8(0xfe).u32(n);
    return this.u8(0xff).u64(BigInt(n));
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /**
   * A 32-byte hash given in display (RPC) order, as txids are, written in wire order: reversed, with
   * fromHexLength's check and errors, and no copy on the way.
   */
  displayHash(hex: string, field: string): this {
    // anything else fails fromHexLength, which throws the error it deserves
    if (typeof hex !== 'string' || hex.length !== 64 || !HEX.test(hex)) fromHexLength(hex, 32, field);
    this.ensure(32);
    this.buf.write(hex, this.pos, 32, 'hex');
    this.buf.subarray(this.pos, this.pos + 32).reverse();
    this.pos += 32;
    return this;
  }

  varBytes(b: Uint8Array): this {
    return this.compactSize(b.length).bytes(b);
  }

  finish(): Uint8Array {
    return new Uint8Array(this.buf.buffer, this.buf.byteOffset, this.pos).slice();
  }
}

/** Reads little-endian fields; every read checks the remaining length. */
export class ByteReader {
  private pos = 0;
  private readonly view: Buffer;

  constructor(
    bytes: Uint8Array,
    private readonly what = 'data',
  ) {
    this.view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get remaining(): number {
    return this.view.length - this.pos;
  }

  private need(n: number): void {
    if (this.pos + n > this.view.length) {
      throw new BitcoinError(
        'invalid_transaction',
        `${this.what} ends early: needed ${n} more bytes at offset ${this.pos}, ${this.remaining} left`,
        { offset: this.pos },
      );
    }
  }

  peek(): number {
    this.need(1);
    return this.view[this.pos]!;
  }

  u8(): number {
    this.need(1);
    return this.view[this.pos++]!;
  }

  u32(): number {
    this.need(4);
    const v = this.view.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  u64(): bigint {
    this.need(8);
    const v = this.view.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }

  compactSize(): number {
    const first = this.u8();
    let n: number;
    if (first < 0xfd) return first;
    if (first === 0xfd) {
      this.need(2);
      n = this.view.readUInt16LE(this.pos);
      this.pos += 2;
      if (n < 0xfd) this.nonCanonical();
    } else if (first === 0xfe) {
      n = this.u32();
      if (n <= 0xffff) this.nonCanonical();
    } else {
      const big = this.u64();
      if (big <= 0xffffffffn) this.nonCanonical();
      n = Number(big);
    }
    // No field of a standard transaction comes near this; it also keeps `need` from overflowing.
    if (n > 0x02000000)
      throw new BitcoinError('invalid_transaction', `${this.what} has a size field of ${n}, over the 32 MiB limit`, {
        offset: this.pos,
      });
    return n;
  }

  private nonCanonical(): never {
    throw new BitcoinError(
      'invalid_transaction',
      `${this.what} has a non-canonical compact size at offset ${this.pos}`,
      { offset: this.pos },
    );
  }

  bytes(n: number): Uint8Array {
    this.need(n);
    const out = new Uint8Array(this.view.subarray(this.pos, this.pos + n));
    this.pos += n;
    return out.slice();
  }

  varBytes(): Uint8Array {
    return this.bytes(this.compactSize());
  }
}
