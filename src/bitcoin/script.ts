import { BitcoinError } from './errors.js';

export const OP_0 = 0x00;
export const OP_1 = 0x51;
export const OP_16 = 0x60;
export const OP_DUP = 0x76;
export const OP_EQUAL = 0x87;
export const OP_EQUALVERIFY = 0x88;
export const OP_HASH160 = 0xa9;
export const OP_CHECKSIG = 0xac;
export const OP_CHECKSIGADD = 0xba;
export const OP_NUMEQUAL = 0x9c;

export type ScriptType = 'p2pkh' | 'p2sh' | 'p2wpkh' | 'p2wsh' | 'p2tr' | 'witness_unknown' | 'nonstandard';

export interface WitnessProgram {
  readonly version: number;
  readonly program: Uint8Array;
}

/** BIP141: OP_n followed by one push of 2 to 40 bytes, and nothing else. */
export function witnessProgram(script: Uint8Array): WitnessProgram | null {
  if (script.length < 4 || script.length > 42) return null;
  const op = script[0]!;
  if (op !== OP_0 && (op < OP_1 || op > OP_16)) return null;
  if (script[1]! + 2 !== script.length) return null;
  return { version: op === OP_0 ? 0 : op - OP_1 + 1, program: script.subarray(2) };
}

export function witnessScript(version: number, program: Uint8Array): Uint8Array {
  if (!Number.isInteger(version) || version < 0 || version > 16)
    throw new BitcoinError('invalid_script', `witness version must be 0..16, got ${version}`);
  if (program.length < 2 || program.length > 40)
    throw new BitcoinError('invalid_script', `witness program must be 2..40 bytes, got ${program.length}`);
  const out = new Uint8Array(2 + program.length);
  out[0] = version === 0 ? OP_0 : OP_1 + version - 1;
  out[1] = program.length;
  out.set(program, 2);
  return out;
}

export function p2pkhScript(hash: Uint8Array): Uint8Array {
  return Uint8Array.from([OP_DUP, OP_HASH160, 20, ...hash, OP_EQUALVERIFY, OP_CHECKSIG]);
}

export function p2shScript(hash: Uint8Array): Uint8Array {
  return Uint8Array.from([OP_HASH160, 20, ...hash, OP_EQUAL]);
}

export function classifyScript(script: Uint8Array): ScriptType {
  if (
    script.length === 25 &&
    script[0] === OP_DUP &&
    script[1] === OP_HASH160 &&
    script[2] === 20 &&
    script[23] === OP_EQUALVERIFY &&
    script[24] === OP_CHECKSIG
  )
    return 'p2pkh';
  if (script.length === 23 && script[0] === OP_HASH160 && script[1] === 20 && script[22] === OP_EQUAL) return 'p2sh';
  const wp = witnessProgram(script);
  if (!wp) return 'nonstandard';
  if (wp.version === 0) return wp.program.length === 20 ? 'p2wpkh' : wp.program.length === 32 ? 'p2wsh' : 'nonstandard';
  if (wp.version === 1 && wp.program.length === 32) return 'p2tr';
  return 'witness_unknown';
}

/** Bitcoin Core's default dust relay fee, sat/kvB. */
export const DUST_RELAY_FEE = 3000n;

/**
 * Bitcoin Core's GetDustThreshold: an output is dust when spending it would cost more than it
 * is worth at the dust relay fee. The spend is sized as Core sizes it: 148 bytes for a legacy
 * input, 67 vbytes for a witness input.
 */
export function dustThreshold(scriptPubKey: Uint8Array): bigint {
  const outputSize = 8 + (scriptPubKey.length < 0xfd ? 1 : 3) + scriptPubKey.length;
  const spendSize = witnessProgram(scriptPubKey) ? 32 + 4 + 1 + Math.floor(107 / 4) + 4 : 32 + 4 + 1 + 107 + 4;
  return (BigInt(outputSize + spendSize) * DUST_RELAY_FEE) / 1000n;
}

/** Minimal push of a small number (BIP62): OP_0, OP_1..OP_16, else a little-endian push. */
export function pushNumber(n: number): Uint8Array {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new BitcoinError('invalid_script', `script number must be a non-negative integer, got ${n}`);
  if (n === 0) return Uint8Array.of(OP_0);
  if (n <= 16) return Uint8Array.of(OP_1 + n - 1);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.push(v % 256);
  if (bytes[bytes.length - 1]! & 0x80) bytes.push(0);
  return Uint8Array.of(bytes.length, ...bytes);
}
