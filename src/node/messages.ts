import { parseTx, type Transaction } from '../bitcoin/tx.js';
import { MAX_STANDARD_TX_WEIGHT, txWeight } from '../bitcoin/weight.js';
import { isRequestId } from '../evm/request-id.js';
import { isBytes } from '../p2p/frames.js';
import type { PeerNetwork } from '../p2p/network.js';
import { namesCommitted } from '../wallet/commitment.js';
import { PROPOSAL_CAPS } from '../wallet/proposal.js';
import type { FinalizedBody, FinalizedRecord } from '../storage/records.js';

// The messages members exchange over the links, and the checks a frame's body passes before the
// coordinator sees it. A proposal's full check (checkProposal, src/wallet/proposal.ts) parses its
// transaction, so it runs once, when the coordinator takes the frame.

/** A member's signatures on a proposal: 64 bytes per input, in input order. */
export interface SignaturesBody {
  readonly txid: string;
  readonly signatures: Uint8Array;
}

/**
 * Whether `o` is a map with none but `keys`: a body waits in its peer's inbox, counted at its wire size,
 * until the coordinator takes it, and a padding of empty maps beside its fields decoded to some 64 times
 * its bytes there. A body is what its type says and nothing more.
 */
function only<K extends string>(o: unknown, keys: ReadonlySet<K>): o is Partial<Record<K, unknown>> {
  if (typeof o !== 'object' || o === null || Array.isArray(o) || o instanceof Uint8Array) return false;
  for (const key of Object.keys(o)) if (!keys.has(key as K)) return false;
  return true;
}

const PREVOUT_KEYS = new Set(['value', 'scriptPubKey'] as const);
const PROPOSAL_KEYS = new Set(['version', 'round', 'proposer', 'unsignedTx', 'prevouts', 'requestIds'] as const);
const FINALIZED_KEYS = new Set(['tx', 'prevouts', 'requestIds'] as const);
const SIGNATURES_KEYS = new Set(['txid', 'signatures'] as const);

const isPrevouts = (p: unknown): boolean =>
  Array.isArray(p) &&
  p.length <= PROPOSAL_CAPS.inputs &&
  p.every((o) => only(o, PREVOUT_KEYS) && typeof o.value === 'bigint' && isBytes(o.scriptPubKey));
const isIds = (ids: unknown): boolean =>
  Array.isArray(ids) && ids.length <= PROPOSAL_CAPS.outputs && ids.every((id) => typeof id === 'string');

/** A value with nothing inside it to decode: not a map nor a list. */
const isLeaf = (v: unknown): boolean => typeof v !== 'object' || v === null || v instanceof Uint8Array;
/** `v` is a leaf, or a list of values that pass `each`. */
const leafOrListOf = (v: unknown, each: (item: unknown) => boolean): boolean =>
  Array.isArray(v) ? v.every(each) : isLeaf(v);

const CHECKS: Record<string, (body: unknown) => boolean> = {
  // nothing where a proposal has leaves: the rest of its check (checkProposal: its version, its caps, a
  // malformed one refused and counted, not a fault of the link) is the coordinator's
  proposal: (b) =>
    only(b, PROPOSAL_KEYS) &&
    [b.version, b.round, b.proposer, b.unsignedTx].every(isLeaf) &&
    leafOrListOf(b.prevouts, (o) => only(o, PREVOUT_KEYS) && isLeaf(o.value) && isLeaf(o.scriptPubKey)) &&
    leafOrListOf(b.requestIds, isLeaf),
  signatures: (b) => {
    const s = b as Partial<SignaturesBody> | null;
    return (
      only(s, SIGNATURES_KEYS) &&
      typeof s.txid === 'string' &&
      /^[0-9a-f]{64}$/.test(s.txid) &&
      isBytes(s.signatures) &&
      s.signatures.length > 0 &&
      s.signatures.length % 64 === 0 &&
      s.signatures.length <= 64 * PROPOSAL_CAPS.inputs
    );
  },
  finalized: (b) => only(b, FINALIZED_KEYS) && isBytes(b.tx) && isPrevouts(b.prevouts) && isIds(b.requestIds),
  turn: (b) => Number.isSafeInteger(b),
  /** The sender's operator released this held request (node/outflow.ts). */
  release: (b) => typeof b === 'string' && isRequestId(b),
  /** The sender stopped (true) or resumed (false) signing (node/safety.ts). */
  paused: (b) => typeof b === 'boolean',
  turn_done: (b) => Number.isSafeInteger(b),
  /** The sender cannot name the requests of this confirmed payment: a member holding it finalized sends it. */
  unnamed: (b) => typeof b === 'string' && /^[0-9a-f]{64}$/.test(b),
};

/** Declares every message type on the links with its body check; other types are dropped there. */
export function registerMessages(net: Pick<PeerNetwork, 'registerType'>): void {
  for (const [type, check] of Object.entries(CHECKS)) net.registerType(type, check);
}

/**
 * A peer's finalized payment, parsed: the transaction, with a prevout per input. Throws otherwise.
 * Its txid tells whether it is known already (every member that finalizes a payment sends it to
 * all): only a new one goes on to checkFinalizedCommitment and the signature checks.
 */
export function parseFinalizedBody(body: FinalizedBody): Transaction {
  const signed = parseTx(body.tx);
  if (signed.inputs.length !== body.prevouts.length)
    throw new Error(`${signed.inputs.length} inputs but ${body.prevouts.length} prevouts`);
  // no honest member finalizes one (payment.ts and handoff.ts cap the signed weight) and Core would
  // not relay it: refused before its signatures cost anything
  const weight = txWeight(signed);
  if (weight > MAX_STANDARD_TX_WEIGHT)
    throw new Error(`the transaction weighs ${weight} WU, over the ${MAX_STANDARD_TX_WEIGHT} WU that Core relays`);
  return signed;
}

/**
 * The fields of a peer's finalized payment and nothing else, copied out of its frame: what is kept
 * (and announced again to peers that reconnect) and stored must hold neither what a peer added to
 * it nor a view into the frame's receive buffer (up to 4 MiB).
 */
export function ownFinalizedBody(body: FinalizedBody): FinalizedBody {
  return {
    tx: Uint8Array.from(body.tx),
    prevouts: body.prevouts.map((p) => ({ value: p.value, scriptPubKey: Uint8Array.from(p.scriptPubKey) })),
    requestIds: [...body.requestIds],
  };
}

/**
 * The finalized frame of a recorded payment: every request its output 0 commits to, in order; each
 * prevout's own fields only, which is all a member's link lets through.
 */
export function finalizedBodyOf(f: FinalizedRecord): FinalizedBody {
  const prevouts = f.prevouts.map((p) => ({ value: p.value, scriptPubKey: p.scriptPubKey }));
  return { tx: f.tx, prevouts, requestIds: f.committed ?? f.requestIds };
}

/**
 * A peer's finalized payment before its signatures are checked: output 0 commits to exactly the
 * requests the frame names (which requests it pays is read from the transaction itself, never
 * from the frame's label). Throws otherwise.
 */
export function checkFinalizedCommitment(signed: Transaction, body: FinalizedBody): void {
  if (!body.requestIds.every(isRequestId) || !namesCommitted(signed.outputs, body.requestIds)) {
    throw new Error('output 0 does not commit to the requests the frame names');
  }
}
