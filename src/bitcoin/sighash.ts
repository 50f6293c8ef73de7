import { ByteWriter } from './bytes.js';
import { BitcoinError } from './errors.js';
import { sha256, taggedHash } from './hash.js';
import { writeOutput, type Prevout, type Transaction } from './tx.js';

export const SIGHASH_DEFAULT = 0x00;
export const SIGHASH_ALL = 0x01;
export const SIGHASH_NONE = 0x02;
export const SIGHASH_SINGLE = 0x03;
export const SIGHASH_ANYONECANPAY = 0x80;
const VALID_HASH_TYPES = new Set([0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83]);

/**
 * The BIP341 per-transaction hashes. Computed once per transaction (O(inputs + outputs)) and
 * reused for every input, which is what keeps signing an n-input spend O(n) instead of O(n²).
 * Plain byte arrays only, so the object can be posted to worker threads.
 */
export interface SighashPrecomputed {
  readonly shaPrevouts: Uint8Array;
  readonly shaAmounts: Uint8Array;
  readonly shaScriptPubKeys: Uint8Array;
  readonly shaSequences: Uint8Array;
  readonly shaOutputs: Uint8Array;
}

/**
 * Every path to a sighash (signing, verifying, the collector's checks) starts here, so a transaction
 * without inputs, which parseTx refuses at the edges, is refused here too: with no input to sign
 * or verify, a verification would find nothing invalid and pass a payment that carries no signature.
 */
function checkPrevouts(tx: Transaction, prevouts: readonly Prevout[]): void {
  if (tx.inputs.length === 0) throw new BitcoinError('invalid_transaction', 'transaction has no inputs to sign');
  if (prevouts.length !== tx.inputs.length) {
    throw new BitcoinError(
      'invalid_prevouts',
      `BIP341 needs one prevout per input: transaction has ${tx.inputs.length} inputs, got ${prevouts.length} prevouts`,
    );
  }
}

export function precomputeSighash(tx: Transaction, prevouts: readonly Prevout[]): SighashPrecomputed {
  checkPrevouts(tx, prevouts);
  const outpoints = new ByteWriter(tx.inputs.length * 36);
  const amounts = new ByteWriter(tx.inputs.length * 8);
  const scripts = new ByteWriter(tx.inputs.length * 35);
  const sequences = new ByteWriter(tx.inputs.length * 4);
  tx.inputs.forEach((input, i) => {
    outpoints.displayHash(input.txid, `input ${i} txid`).u32(input.vout);
    amounts.u64(prevouts[i]!.value);
    scripts.varBytes(prevouts[i]!.scriptPubKey);
    sequences.u32(input.sequence);
  });
  const outputs = new ByteWriter(tx.outputs.length * 43);
  for (const output of tx.outputs) writeOutput(outputs, output);
  return {
    shaPrevouts: sha256(outpoints.finish()),
    shaAmounts: sha256(amounts.finish()),
    shaScriptPubKeys: sha256(scripts.finish()),
    shaSequences: sha256(sequences.finish()),
    shaOutputs: sha256(outputs.finish()),
  };
}

const SIGHASH_EPOCH = 0x00;

/** The outputs a hash type commits to: SIGHASH_DEFAULT commits to all, as SIGHASH_ALL. */
function outputTypeOf(hashType: number): number {
  return hashType === SIGHASH_DEFAULT ? SIGHASH_ALL : hashType & 0x03;
}

function checkLeafHash(leafHash: Uint8Array | null): void {
  if (leafHash !== null && leafHash.length !== 32)
    throw new BitcoinError('invalid_length', `tapleaf hash must be 32 bytes, got ${leafHash.length}`);
}

/** SigMsg up to the input's own data: epoch, hash type, the transaction's fields and hashes, spend type. */
function writeHead(
  w: ByteWriter,
  pre: SighashPrecomputed,
  tx: Pick<Transaction, 'version' | 'locktime'>,
  hashType: number,
  leafHash: Uint8Array | null,
): void {
  w.u8(SIGHASH_EPOCH).u8(hashType).u32(tx.version).u32(tx.locktime);
  if ((hashType & SIGHASH_ANYONECANPAY) === 0)
    w.bytes(pre.shaPrevouts).bytes(pre.shaAmounts).bytes(pre.shaScriptPubKeys).bytes(pre.shaSequences);
  if (outputTypeOf(hashType) === SIGHASH_ALL) w.bytes(pre.shaOutputs);
  w.u8(leafHash === null ? 0 : 2);
}

/** The script path's extension: the leaf's hash, key_version 0, no OP_CODESEPARATOR. */
function writeLeafExtension(w: ByteWriter, leafHash: Uint8Array): void {
  w.bytes(leafHash).u8(0).u32(0xffffffff);
}

/**
 * BIP341 SigMsg for one input, with the leading epoch byte (as the BIP's vectors print it):
 * key path when `leafHash` is null, script path (ext_flag 1, key_version 0, no
 * OP_CODESEPARATOR) otherwise. No annex: the federation never uses one.
 */
export function taprootSigMsg(
  pre: SighashPrecomputed,
  tx: Transaction,
  prevouts: readonly Prevout[],
  inputIndex: number,
  hashType: number,
  leafHash: Uint8Array | null,
): Uint8Array {
  if (!VALID_HASH_TYPES.has(hashType))
    throw new BitcoinError('invalid_transaction', `hash type 0x${hashType.toString(16)} is not a BIP341 hash type`);
  const input = tx.inputs[inputIndex];
  if (!input)
    throw new BitcoinError(
      'invalid_transaction',
      `input index ${inputIndex} out of range: transaction has ${tx.inputs.length} inputs`,
    );
  const outputType = outputTypeOf(hashType);
  const anyoneCanPay = (hashType & SIGHASH_ANYONECANPAY) !== 0;
  if (outputType === SIGHASH_SINGLE && inputIndex >= tx.outputs.length) {
    throw new BitcoinError(
      'invalid_transaction',
      `SIGHASH_SINGLE input ${inputIndex} has no matching output (${tx.outputs.length} outputs)`,
    );
  }
  checkLeafHash(leafHash);
  const w = new ByteWriter(256);
  writeHead(w, pre, tx, hashType, leafHash);
  if (anyoneCanPay) {
    const prevout = prevouts[inputIndex];
    if (!prevout) throw new BitcoinError('invalid_prevouts', `no prevout for input ${inputIndex}`);
    w.displayHash(input.txid, `input ${inputIndex} txid`).u32(input.vout);
    w.u64(prevout.value).varBytes(prevout.scriptPubKey).u32(input.sequence);
  } else {
    w.u32(inputIndex);
  }
  if (outputType === SIGHASH_SINGLE) {
    const single = new ByteWriter(43);
    writeOutput(single, tx.outputs[inputIndex]!);
    w.bytes(sha256(single.finish()));
  }
  if (leafHash !== null) writeLeafExtension(w, leafHash);
  return w.finish();
}

export function taprootSighash(...args: Parameters<typeof taprootSigMsg>): Uint8Array {
  return taggedHash('TapSighash', taprootSigMsg(...args));
}

/**
 * The federation's SigMsgs (script path, SIGHASH_DEFAULT) differ only in the input index: each is
 * head ‖ u32(index) ‖ tail. This is what hashing any input's needs, a couple of hundred bytes, where
 * the transaction and its prevouts grow with the inputs: a worker is handed this, not them.
 */
export interface ScriptPathTemplate {
  readonly head: Uint8Array;
  readonly tail: Uint8Array;
  /** The transaction's input count: the indexes the template may be hashed for. */
  readonly inputs: number;
}

export function scriptPathTemplate(pre: SighashPrecomputed, tx: Transaction, leafHash: Uint8Array): ScriptPathTemplate {
  checkLeafHash(leafHash);
  const head = new ByteWriter(180);
  writeHead(head, pre, tx, SIGHASH_DEFAULT, leafHash);
  const tail = new ByteWriter(37);
  writeLeafExtension(tail, leafHash);
  return { head: head.finish(), tail: tail.finish(), inputs: tx.inputs.length };
}

/** Sighashes of inputs [from, to) from their template, concatenated (32 bytes each). */
export function templateSighashes(t: ScriptPathTemplate, from: number, to: number): Uint8Array {
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || from > to || to > t.inputs)
    throw new BitcoinError('invalid_transaction', `input range [${from}, ${to}) is not within ${t.inputs} inputs`);
  const msg = Buffer.alloc(t.head.length + 4 + t.tail.length);
  msg.set(t.head, 0);
  msg.set(t.tail, t.head.length + 4);
  const out = new Uint8Array((to - from) * 32);
  for (let i = from; i < to; i++) {
    msg.writeUInt32LE(i, t.head.length);
    out.set(taggedHash('TapSighash', msg), (i - from) * 32);
  }
  return out;
}

/** The federation's sighash of every input, one array each. */
export function allScriptPathSighashes(
  tx: Transaction,
  prevouts: readonly Prevout[],
  leafHash: Uint8Array,
): Uint8Array[] {
  const all = templateSighashes(scriptPathTemplate(precomputeSighash(tx, prevouts), tx, leafHash), 0, tx.inputs.length);
  return tx.inputs.map((_, i) => all.subarray(i * 32, i * 32 + 32));
}
