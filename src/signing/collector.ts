import { equal, toHex } from '../bitcoin/bytes.js';
import { memberIndex, type Federation } from '../bitcoin/federation.js';
import { allScriptPathSighashes } from '../bitcoin/sighash.js';
import { txid as txidOf, withWitnesses, type Prevout, type Transaction } from '../bitcoin/tx.js';
import { SigningError } from './errors.js';
import { schnorrBackend } from './schnorr.js';

/** Checks one member's signatures (64 bytes per input) on a transaction; one byte per input, 1 = valid. */
export type VerifyFn = (tx: Transaction, prevouts: readonly Prevout[], pubkey: Uint8Array, signatures: Uint8Array) => Promise<Uint8Array>;

/** N copies of one key, as the batch verifier wants one key per item. */
export function repeatKey(pubkey: Uint8Array, count: number): Uint8Array {
  const keys = new Uint8Array(count * 32);
  for (let i = 0; i < count; i++) keys.set(pubkey, i * 32);
  return keys;
}

/** Verification on the calling thread; the node plugs in its worker pool instead. */
export function inProcessVerifier(federation: Federation): VerifyFn {
  return async (tx, prevouts, pubkey, signatures) => {
    const sighashes = Buffer.concat(allScriptPathSighashes(tx, prevouts, federation.leafHash));
    return schnorrBackend().verifyBatch(signatures, sighashes, repeatKey(pubkey, tx.inputs.length));
  };
}

export interface MemberSignatures {
  readonly pubkey: Uint8Array;
  /** One 64-byte signature per input, in input order. */
  readonly signatures: readonly Uint8Array[];
}

interface Pending {
  readonly tx: Transaction;
  readonly prevouts: readonly Prevout[];
  /** member key hex → that member's signatures, verified */
  readonly sets: Map<string, readonly Uint8Array[]>;
}

export type AddOutcome = 'added' | 'duplicate';

/**
 * Collects members' verified signature sets per transaction and finalizes once t are in.
 * Nothing unverified is ever kept: a set is checked whole (count, membership, every
 * signature) before it is stored.
 */
export class SignatureCollector {
  private readonly pending = new Map<string, Pending>();

  private readonly verify: VerifyFn;

  constructor(
    private readonly federation: Federation,
    verify?: VerifyFn,
  ) {
    this.verify = verify ?? inProcessVerifier(federation);
  }

  /** Starts collecting for a transaction; returns its txid. Idempotent. */
  open(tx: Transaction, prevouts: readonly Prevout[]): string {
    const id = txidOf(tx);
    if (!this.pending.has(id)) this.pending.set(id, { tx, prevouts: [...prevouts], sets: new Map() });
    return id;
  }

  private get(txid: string): Pending {
    const p = this.pending.get(txid);
    if (!p) throw new SigningError('unknown_transaction', `no transaction ${txid} is being collected`, { txid });
    return p;
  }

  async add(txid: string, set: MemberSignatures): Promise<AddOutcome> {
    const p = this.get(txid);
    const member = toHex(set.pubkey);
    if (memberIndex(this.federation, set.pubkey) < 0) {
      throw new SigningError('not_a_member', `${member} is not a member of the federation`, { txid, pubkey: member });
    }
    const inputs = p.tx.inputs.length;
    if (set.signatures.length !== inputs) {
      throw new SigningError('wrong_signature_count', `member ${member} sent ${set.signatures.length} signatures for ${txid}, which has ${inputs} inputs`, { txid, pubkey: member });
    }
    set.signatures.forEach((sig, i) => {
      if (!(sig instanceof Uint8Array) || sig.length !== 64) {
        throw new SigningError('invalid_signature', `member ${member}: signature for input ${i} must be 64 bytes`, { txid, pubkey: member, input: i });
      }
    });
    const known = p.sets.get(member);
    if (known) {
      if (known.every((sig, i) => equal(sig, set.signatures[i]!))) return 'duplicate';
      // A second, different valid set from one member is harmless for the transaction but is
      // kept out: the first verified set stays, so a replay cannot churn state.
      throw new SigningError('conflicting_signature', `member ${member} already gave different signatures for ${txid}`, { txid, pubkey: member });
    }
    const valid = await this.verify(p.tx, p.prevouts, set.pubkey, Buffer.concat(set.signatures));
    const bad = valid.findIndex((ok) => ok !== 1);
    if (bad >= 0) {
      throw new SigningError('invalid_signature', `member ${member}: signature for input ${bad} of ${txid} does not verify`, { txid, pubkey: member, input: bad });
    }
    p.sets.set(member, set.signatures.map((s) => Uint8Array.from(s)));
    return 'added';
  }

  count(txid: string): number {
    return this.get(txid).sets.size;
  }

  signers(txid: string): string[] {
    return [...this.get(txid).sets.keys()];
  }

  /** The fully signed transaction, with exactly t signatures per input. */
  finalize(txid: string): Transaction {
    const p = this.get(txid);
    return withWitnesses(p.tx, assembleWitnesses(this.federation, p.sets, p.tx.inputs.length));
  }

  forget(txid: string): void {
    this.pending.delete(txid);
  }
}

/**
 * Script-path witnesses: one item per member in reverse sorted-key order (the tapscript pops
 * the last key's item first), a signature for t chosen signers — the first t by sorted key —
 * and empty for the others; then the script and the control block.
 */
export function assembleWitnesses(federation: Federation, sets: ReadonlyMap<string, readonly Uint8Array[]>, inputCount: number): Uint8Array[][] {
  const keys = federation.pubkeys.map(toHex);
  const chosen = new Set(keys.filter((k) => sets.has(k)).slice(0, federation.threshold));
  if (chosen.size < federation.threshold) {
    throw new SigningError('not_enough_signatures', `have signatures from ${chosen.size} members, need ${federation.threshold}`, { have: chosen.size, need: federation.threshold });
  }
  const empty = new Uint8Array(0);
  return Array.from({ length: inputCount }, (_, input) => [
    ...[...keys].reverse().map((k) => (chosen.has(k) ? sets.get(k)![input]! : empty)),
    federation.tapscript,
    federation.controlBlock,
  ]);
}

/**
 * Checks a finalized federation spend as the tapscript will: per input n + 2 items, script and
 * control block ours, every item empty or a 64-byte signature, exactly t signatures, each valid
 * for its key. Throws `invalid_witness` naming the input and the first fault.
 */
export function checkFinalizedWitnesses(tx: Transaction, prevouts: readonly Prevout[], federation: Federation): void {
  const n = federation.pubkeys.length;
  const sighashes = allScriptPathSighashes(tx, prevouts, federation.leafHash);
  const backend = schnorrBackend();
  for (const [i, input] of tx.inputs.entries()) {
    const fault = (reason: string): never => {
      throw new SigningError('invalid_witness', `input ${i}: ${reason}`, { input: i });
    };
    const w = input.witness;
    if (w.length !== n + 2) fault(`witness has ${w.length} items, expected ${n + 2} (one per member, script, control block)`);
    if (!equal(w[n]!, federation.tapscript)) fault('witness script is not the federation tapscript');
    if (!equal(w[n + 1]!, federation.controlBlock)) fault('control block is not the federation control block');
    let signatures = 0;
    for (let j = 0; j < n; j++) {
      const item = w[j]!;
      if (item.length === 0) continue;
      if (item.length !== 64) fault(`item ${j} is ${item.length} bytes; only empty items or 64-byte SIGHASH_DEFAULT signatures are allowed`);
      const key = federation.pubkeys[n - 1 - j]!;
      const [ok] = backend.verifyBatch(item, sighashes[i]!, key);
      if (ok !== 1) fault(`signature in item ${j} does not verify for member ${toHex(key)}`);
      signatures++;
    }
    if (signatures !== federation.threshold) fault(`has ${signatures} signatures, the federation needs exactly ${federation.threshold}`);
  }
}
