import { equal, toHex } from '../bitcoin/bytes.js';
import { memberIndex, type Federation } from '../bitcoin/federation.js';
import { randomInt } from 'node:crypto';
import {
  allScriptPathSighashes,
  precomputeSighash,
  scriptPathTemplate,
  templateSighashes,
} from '../bitcoin/sighash.js';
import { txid as txidOf, withWitnesses, type Prevout, type Transaction } from '../bitcoin/tx.js';
import * as stages from '../metrics/stages.js';
import { SigningError } from './errors.js';
import { repeatKey, schnorrBackend } from './schnorr.js';

/** Checks one member's signatures (64 bytes per input) on a transaction; one byte per input, 1 = valid. */
export type VerifyFn = (
  tx: Transaction,
  prevouts: readonly Prevout[],
  pubkey: Uint8Array,
  signatures: Uint8Array,
) => Promise<Uint8Array>;

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
  /**
   * Members whose set for this transaction failed verification. An honest member checks its own
   * signatures before they leave, so such a member is faulty or hostile, and each set it sent again
   * would cost a verification of every input on the pool while honest sets wait: its later sets for
   * this transaction are refused unchecked. At most one entry per member. Empty when senders are not
   * authenticated.
   */
  readonly failed: Set<string>;
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

  /**
   * `authenticatedSenders`: a set's key is proven to be its sender's (the node's peers). Only then does
   * a set that fails verification say anything of the member it names; from files anyone can write
   * (the offline ceremony) a forged set under an honest member's key must not shut that member out.
   */
  constructor(
    private readonly federation: Federation,
    verify?: VerifyFn,
    private readonly authenticatedSenders = true,
  ) {
    this.verify = verify ?? inProcessVerifier(federation);
  }

  /** Starts collecting for a transaction; returns its txid. Idempotent. */
  open(tx: Transaction, prevouts: readonly Prevout[]): string {
    const id = txidOf(tx);
    if (!this.pending.has(id))
      this.pending.set(id, { tx, prevouts: [...prevouts], sets: new Map(), failed: new Set() });
    return id;
  }

  private get(txid: string): Pending {
    const p = this.pending.get(txid);
    if (!p) throw new SigningError('unknown_transaction', `no transaction ${txid} is being collected`, { txid });
    return p;
  }

  /**
   * `signedHere`: the set is this member's own, which the self-checking backend verified as it signed
   * (src/signing/schnorr.ts), so only its shape is checked.
   */
  async add(txid: string, set: MemberSignatures, signedHere = false): Promise<AddOutcome> {
    const p = this.get(txid);
    const member = toHex(set.pubkey);
    if (stages.time('verify', () => this.duplicate(txid, p, member, set))) return 'duplicate';
    const valid = signedHere
      ? new Uint8Array(set.signatures.length).fill(1)
      : await this.verify(p.tx, p.prevouts, set.pubkey, Buffer.concat(set.signatures));
    stages.time('verify', () => {
      const bad = valid.findIndex((ok) => ok !== 1);
      if (bad >= 0) {
        if (this.authenticatedSenders) p.failed.add(member);
        throw new SigningError(
          'invalid_signature',
          `member ${member}: signature for input ${bad} of ${txid} does not verify`,
          { txid, pubkey: member, input: bad },
        );
      }
      p.sets.set(
        member,
        set.signatures.map((s) => Uint8Array.from(s)),
      );
    });
    return 'added';
  }

  /**
   * Checks a set before it is verified (its member, not one refused before for this transaction, its
   * shape); true when the member already gave exactly these signatures.
   */
  private duplicate(txid: string, p: Pending, member: string, set: MemberSignatures): boolean {
    if (memberIndex(this.federation, set.pubkey) < 0) {
      throw new SigningError('not_a_member', `${member} is not a member of the federation`, { txid, pubkey: member });
    }
    if (p.failed.has(member)) {
      throw new SigningError(
        'invalid_signature',
        `member ${member} sent signatures for ${txid} that did not verify; its sets for it are refused unchecked`,
        { txid, pubkey: member },
      );
    }
    const inputs = p.tx.inputs.length;
    if (set.signatures.length !== inputs) {
      throw new SigningError(
        'wrong_signature_count',
        `member ${member} sent ${set.signatures.length} signatures for ${txid}, which has ${inputs} inputs`,
        { txid, pubkey: member },
      );
    }
    set.signatures.forEach((sig, i) => {
      if (!(sig instanceof Uint8Array) || sig.length !== 64) {
        throw new SigningError('invalid_signature', `member ${member}: signature for input ${i} must be 64 bytes`, {
          txid,
          pubkey: member,
          input: i,
        });
      }
    });
    const known = p.sets.get(member);
    if (known) {
      if (known.every((sig, i) => equal(sig, set.signatures[i]!))) return true;
      // A second, different valid set from one member is harmless for the transaction but is
      // kept out: the first verified set stays, so a replay cannot churn state.
      throw new SigningError(
        'conflicting_signature',
        `member ${member} already gave different signatures for ${txid}`,
        { txid, pubkey: member },
      );
    }
    return false;
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
export function assembleWitnesses(
  federation: Federation,
  sets: ReadonlyMap<string, readonly Uint8Array[]>,
  inputCount: number,
): Uint8Array[][] {
  const keys = federation.pubkeys.map(toHex);
  const chosen = new Set(keys.filter((k) => sets.has(k)).slice(0, federation.threshold));
  if (chosen.size < federation.threshold) {
    throw new SigningError(
      'not_enough_signatures',
      `have signatures from ${chosen.size} members, need ${federation.threshold}`,
      { have: chosen.size, need: federation.threshold },
    );
  }
  const empty = new Uint8Array(0);
  return Array.from({ length: inputCount }, (_, input) => [
    ...[...keys].reverse().map((k) => (chosen.has(k) ? sets.get(k)![input]! : empty)),
    federation.tapscript,
    federation.controlBlock,
  ]);
}

function witnessFault(input: number, reason: string): never {
  throw new SigningError('invalid_witness', `input ${input}: ${reason}`, { input });
}

/**
 * The structural half of the tapscript's check of a finalized federation spend: per input n + 2
 * items, script and control block ours, every item empty or a 64-byte signature, exactly t
 * signatures. Returns, per input, the signatures with the index of the key each claims.
 */
function witnessSignatures(tx: Transaction, federation: Federation): { key: number; signature: Uint8Array }[][] {
  const n = federation.pubkeys.length;
  return tx.inputs.map((input, i) => {
    const w = input.witness;
    if (w.length !== n + 2)
      witnessFault(i, `witness has ${w.length} items, expected ${n + 2} (one per member, script, control block)`);
    if (!equal(w[n]!, federation.tapscript)) witnessFault(i, 'witness script is not the federation tapscript');
    if (!equal(w[n + 1]!, federation.controlBlock))
      witnessFault(i, 'control block is not the federation control block');
    const found: { key: number; signature: Uint8Array }[] = [];
    for (let j = 0; j < n; j++) {
      const item = w[j]!;
      if (item.length === 0) continue;
      if (item.length !== 64)
        witnessFault(
          i,
          `item ${j} is ${item.length} bytes; only empty items or 64-byte SIGHASH_DEFAULT signatures are allowed`,
        );
      // the tapscript pops the last key's item first
      found.push({ key: n - 1 - j, signature: item });
    }
    if (found.length !== federation.threshold)
      witnessFault(i, `has ${found.length} signatures, the federation needs exactly ${federation.threshold}`);
    return found;
  });
}

/**
 * Checks a finalized federation spend as the tapscript will, on the calling thread: the
 * structure, then every signature for its key. Throws `invalid_witness` naming the input and
 * the first fault.
 */
export function checkFinalizedWitnesses(tx: Transaction, prevouts: readonly Prevout[], federation: Federation): void {
  const perInput = witnessSignatures(tx, federation);
  const sighashes = allScriptPathSighashes(tx, prevouts, federation.leafHash);
  for (const [i, found] of perInput.entries()) checkInputSignatures(i, found, sighashes[i]!, federation);
}

/** Verifies input `i`'s signatures `found` over its `sighash` on the calling thread; throws at the first that fails. */
function checkInputSignatures(
  i: number,
  found: readonly { key: number; signature: Uint8Array }[],
  sighash: Uint8Array,
  federation: Federation,
): void {
  const backend = schnorrBackend();
  const n = federation.pubkeys.length;
  for (const { key, signature } of found) {
    const [ok] = backend.verifyBatch(signature, sighash, federation.pubkeys[key]!);
    if (ok !== 1)
      witnessFault(i, `signature in item ${n - 1 - key} does not verify for member ${toHex(federation.pubkeys[key]!)}`);
  }
}

/**
 * The same check with the signatures verified by `verify` (the node's worker pool), one call
 * per signer. Our members sign every input of a payment, so a finalized payment from a peer must
 * carry the same t signers on every input; anything else is refused. First every signer's
 * signature on one input picked at random is verified here: a member can make valid signatures of
 * its own on every input but no other member's, so a forged payment costs t verifications, not a
 * signer's whole set for every input of a frame as large as it likes, each time it is sent.
 */
export async function verifyFinalizedWitnesses(
  tx: Transaction,
  prevouts: readonly Prevout[],
  federation: Federation,
  verify: VerifyFn,
): Promise<void> {
  const { signers, sets } = stages.time('verify', () => {
    const perInput = witnessSignatures(tx, federation);
    const signers = perInput[0]?.map((f) => f.key) ?? [];
    const sets = signers.map(() => new Uint8Array(64 * tx.inputs.length));
    for (const [i, found] of perInput.entries()) {
      if (found.some((f, s) => f.key !== signers[s])) witnessFault(i, "its signers differ from input 0's");
      found.forEach((f, s) => sets[s]!.set(f.signature, i * 64));
    }
    // refuses a transaction without inputs, which would otherwise pass with no signature checked
    const template = scriptPathTemplate(precomputeSighash(tx, prevouts), tx, federation.leafHash);
    const spot = randomInt(tx.inputs.length);
    checkInputSignatures(spot, perInput[spot]!, templateSighashes(template, spot, spot + 1), federation);
    return { signers, sets };
  });
  for (const [s, key] of signers.entries()) {
    const valid = await verify(tx, prevouts, federation.pubkeys[key]!, sets[s]!);
    const bad = valid.findIndex((ok) => ok !== 1);
    if (bad >= 0) witnessFault(bad, `signature does not verify for member ${toHex(federation.pubkeys[key]!)}`);
  }
}
