import { ByteReader, ByteWriter, fromHex, reverse, toHex } from './bytes.js';
import { BitcoinError } from './errors.js';
import { hash256 } from './hash.js';

export interface TxInput {
  /** Previous transaction id, display (RPC) byte order, lowercase hex. */
  readonly txid: string;
  readonly vout: number;
  readonly sequence: number;
  readonly scriptSig: Uint8Array;
  readonly witness: readonly Uint8Array[];
}

export interface TxOutput {
  readonly value: bigint;
  readonly scriptPubKey: Uint8Array;
}

export interface Transaction {
  readonly version: number;
  readonly inputs: readonly TxInput[];
  readonly outputs: readonly TxOutput[];
  readonly locktime: number;
}

/** What a spent output was: BIP341 commits to every input's amount and script. */
export interface Prevout {
  readonly value: bigint;
  readonly scriptPubKey: Uint8Array;
}

export const MAX_MONEY = 21_000_000n * 100_000_000n;

/** What `tx` leaves to the miners: what its inputs spend (`prevouts`) less what its outputs pay (negative: more). */
export function spendFee(tx: Transaction, prevouts: readonly Prevout[]): bigint {
  return prevouts.reduce((a, p) => a + p.value, 0n) - tx.outputs.reduce((a, o) => a + o.value, 0n);
}

function hasWitness(tx: Transaction): boolean {
  return tx.inputs.some((i) => i.witness.length > 0);
}

function writeOutpoint(w: ByteWriter, input: TxInput): void {
  w.displayHash(input.txid, 'input txid').u32(input.vout);
}

export function writeOutput(w: ByteWriter, output: TxOutput): void {
  w.u64(output.value).varBytes(output.scriptPubKey);
}

/** Serialization; with `witness` false (or no witness present) the legacy form that txid hashes. */
export function serializeTx(tx: Transaction, witness = true): Uint8Array {
  const segwit = witness && hasWitness(tx);
  const w = new ByteWriter(64 + tx.inputs.length * (segwit ? 256 : 41) + tx.outputs.length * 43);
  w.u32(tx.version);
  if (segwit) w.u8(0).u8(1);
  w.compactSize(tx.inputs.length);
  for (const input of tx.inputs) {
    writeOutpoint(w, input);
    w.varBytes(input.scriptSig).u32(input.sequence);
  }
  w.compactSize(tx.outputs.length);
  for (const output of tx.outputs) writeOutput(w, output);
  if (segwit) {
    for (const input of tx.inputs) {
      w.compactSize(input.witness.length);
      for (const item of input.witness) w.varBytes(item);
    }
  }
  w.u32(tx.locktime);
  return w.finish();
}

export function parseTx(bytes: Uint8Array): Transaction {
  const r = new ByteReader(bytes, 'transaction');
  const version = r.u32();
  let segwit = false;
  let inputCount = r.compactSize();
  if (inputCount === 0) {
    const flag = r.u8();
    if (flag !== 1)
      throw new BitcoinError('invalid_transaction', `transaction has segwit marker with flag ${flag}, expected 1`);
    segwit = true;
    inputCount = r.compactSize();
  }
  const inputs: { txid: string; vout: number; sequence: number; scriptSig: Uint8Array; witness: Uint8Array[] }[] = [];
  for (let i = 0; i < inputCount; i++) {
    const txid = toHex(reverse(r.bytes(32)));
    const vout = r.u32();
    const scriptSig = r.varBytes();
    const sequence = r.u32();
    inputs.push({ txid, vout, sequence, scriptSig, witness: [] });
  }
  const outputCount = r.compactSize();
  const outputs: TxOutput[] = [];
  for (let i = 0; i < outputCount; i++) {
    const value = r.u64();
    if (value > MAX_MONEY)
      throw new BitcoinError('invalid_transaction', `output ${i} value ${value} exceeds 21,000,000 BTC`);
    outputs.push({ value, scriptPubKey: r.varBytes() });
  }
  if (segwit) {
    for (const input of inputs) {
      const items = r.compactSize();
      for (let j = 0; j < items; j++) input.witness.push(r.varBytes());
    }
    if (!inputs.some((i) => i.witness.length > 0))
      throw new BitcoinError('invalid_transaction', 'transaction has the segwit marker but no witness data');
  }
  const locktime = r.u32();
  if (r.remaining !== 0) throw new BitcoinError('invalid_transaction', `transaction has ${r.remaining} trailing bytes`);
  if (inputs.length === 0) throw new BitcoinError('invalid_transaction', 'transaction has no inputs');
  return { version, inputs, outputs, locktime };
}

/** Transaction id in display byte order, as RPC prints it. */
export function txid(tx: Transaction): string {
  return toHex(reverse(hash256(serializeTx(tx, false))));
}

export function wtxid(tx: Transaction): string {
  return toHex(reverse(hash256(serializeTx(tx, true))));
}

export function withWitnesses(tx: Transaction, witnesses: readonly (readonly Uint8Array[])[]): Transaction {
  if (witnesses.length !== tx.inputs.length) {
    throw new BitcoinError(
      'invalid_transaction',
      `need one witness per input: ${tx.inputs.length} inputs, ${witnesses.length} witnesses`,
    );
  }
  return { ...tx, inputs: tx.inputs.map((input, i) => ({ ...input, witness: witnesses[i]! })) };
}

/** Reads the JSON prevouts shape `[{ "value": sats, "scriptPubKey": hex }]` of the vectors and CLI. */
export function parsePrevouts(json: unknown, inputCount?: number): Prevout[] {
  if (!Array.isArray(json))
    throw new BitcoinError(
      'invalid_prevouts',
      `prevouts must be a JSON array of {value, scriptPubKey}, got ${typeof json}`,
    );
  if (inputCount !== undefined && json.length !== inputCount) {
    throw new BitcoinError(
      'invalid_prevouts',
      `prevouts must have one entry per input: transaction has ${inputCount} inputs, prevouts has ${json.length}`,
    );
  }
  return json.map((entry: unknown, i) => {
    const e = entry as { value?: unknown; scriptPubKey?: unknown } | null;
    const value = e?.value;
    if (
      !(typeof value === 'number' && Number.isSafeInteger(value)) &&
      typeof value !== 'string' &&
      typeof value !== 'bigint'
    ) {
      throw new BitcoinError(
        'invalid_prevouts',
        `prevouts[${i}].value must be an integer number of satoshis, got ${JSON.stringify(value)}`,
      );
    }
    let sats: bigint;
    try {
      sats = BigInt(value);
    } catch {
      throw new BitcoinError(
        'invalid_prevouts',
        `prevouts[${i}].value must be an integer number of satoshis, got ${JSON.stringify(value)}`,
      );
    }
    if (sats < 0n || sats > MAX_MONEY)
      throw new BitcoinError(
        'invalid_prevouts',
        `prevouts[${i}].value must be between 0 and 21,000,000 BTC in satoshis, got ${sats}`,
      );
    if (typeof e?.scriptPubKey !== 'string')
      throw new BitcoinError('invalid_prevouts', `prevouts[${i}].scriptPubKey must be a hex string`);
    return { value: sats, scriptPubKey: fromHex(e.scriptPubKey, `prevouts[${i}].scriptPubKey`) };
  });
}

export function prevoutsToJson(prevouts: readonly Prevout[]): { value: number; scriptPubKey: string }[] {
  return prevouts.map((p) => ({ value: Number(p.value), scriptPubKey: toHex(p.scriptPubKey) }));
}
