import { proposalInputKey, proposalInputPrefix, proposalKey } from '../storage/keys.js';
import type { Store, StoreBatch } from '../storage/store.js';
import { MAX_MONEY, parseTx, serializeTx, txid as txidOf, type Prevout, type Transaction } from '../bitcoin/tx.js';
import { MAX_STANDARD_TX_WEIGHT } from '../bitcoin/weight.js';
import { isRequestId } from '../evm/request-id.js';
import { WalletError } from './errors.js';
import type { Payment } from './payment.js';
import { reserveUtxos, type Outpoint, type ReserveOptions } from './utxos.js';
import type { Proposal } from '../storage/records.js';

/**
 * Caps on a proposal checked before any store read (SPEC §3: every cache and every cost a peer
 * can cause is bounded). An input weighs at least 41 bytes × 4 without its witness and an output
 * at least 9 × 4, so a transaction with more of either is over what Core relays whatever it holds.
 */
export const PROPOSAL_CAPS = {
  inputs: Math.floor(MAX_STANDARD_TX_WEIGHT / (41 * 4)),
  outputs: Math.floor(MAX_STANDARD_TX_WEIGHT / (9 * 4)),
  /** Bytes of the unsigned transaction: its non-witness bytes count 4 WU each. */
  txBytes: MAX_STANDARD_TX_WEIGHT / 4,
} as const;

/** A proposal parsed once at the edge: only its checked fields, its transaction and txid. */
export interface CheckedProposal {
  readonly proposal: Proposal;
  readonly tx: Transaction;
  readonly txid: string;
}

const fail = (detail: string): never => {
  throw new WalletError('invalid_proposal', detail);
};

/**
 * Turns untrusted data (a peer's frame, a stored record) into a CheckedProposal, or throws
 * WalletError('invalid_proposal') naming what is wrong. Only the fields of Proposal are kept, so
 * whatever else a peer put in the frame is neither stored nor passed on.
 */
export function checkProposal(body: unknown): CheckedProposal {
  const p = (typeof body === 'object' && body !== null ? body : fail('a proposal must be a map')) as Record<
    string,
    unknown
  >;
  if (p.version !== 1) fail(`proposal version must be 1, got ${JSON.stringify(p.version)}`);
  if (!Number.isSafeInteger(p.round) || (p.round as number) < 0) fail('proposal round must be a non-negative integer');
  if (typeof p.proposer !== 'string' || !/^[0-9a-f]{64}$/.test(p.proposer))
    fail('proposal proposer must be a 64-hex x-only key');
  if (!(p.unsignedTx instanceof Uint8Array)) fail('proposal unsignedTx must be bytes');
  const length = (p.unsignedTx as Uint8Array).length;
  if (length > PROPOSAL_CAPS.txBytes)
    fail(`unsigned transaction of ${length} bytes is over the ${PROPOSAL_CAPS.txBytes} that Core relays`);
  // copies, here and in the prevouts: a view into a peer's frame would keep all of it alive (up to
  // the links' frame size) for as long as the proposal is kept
  const raw = Buffer.from(p.unsignedTx as Uint8Array);
  if (!Array.isArray(p.requestIds) || p.requestIds.length > PROPOSAL_CAPS.outputs)
    fail(`proposal requestIds must be a list of at most ${PROPOSAL_CAPS.outputs} ids`);
  const requestIds = p.requestIds as unknown[];
  for (const id of requestIds)
    if (!isRequestId(id))
      fail(`request id ${JSON.stringify(id)} is not in canonical form <0x + 64 lowercase hex>:<ordinal>`);
  if (!Array.isArray(p.prevouts) || p.prevouts.length > PROPOSAL_CAPS.inputs)
    fail(`proposal prevouts must be a list of at most ${PROPOSAL_CAPS.inputs}`);
  const prevouts = (p.prevouts as unknown[]).map((o, i): Prevout => {
    const v = o as Partial<Prevout> | null;
    if (
      typeof v?.value !== 'bigint' ||
      v.value < 0n ||
      v.value > MAX_MONEY ||
      !(v.scriptPubKey instanceof Uint8Array) ||
      v.scriptPubKey.length > 10_000
    )
      fail(`prevout ${i} must be { value: 0..MAX_MONEY sats, scriptPubKey: bytes }`);
    return { value: v!.value!, scriptPubKey: Buffer.from(v!.scriptPubKey!) };
  });
  let tx: Transaction;
  try {
    tx = parseTx(raw);
  } catch (err) {
    throw new WalletError('invalid_proposal', `unsigned transaction does not parse: ${(err as Error).message}`);
  }
  if (tx.inputs.length !== prevouts.length) fail(`${tx.inputs.length} inputs but ${prevouts.length} prevouts`);
  if (tx.inputs.some((i) => i.scriptSig.length > 0 || i.witness.length > 0))
    fail('an unsigned proposal carries no scriptSig or witness');
  const proposal: Proposal = {
    version: 1,
    round: p.round as number,
    proposer: p.proposer as string,
    unsignedTx: raw,
    prevouts,
    requestIds: requestIds as string[],
  };
  return { proposal, tx, txid: txidOf(tx) };
}

/** A payment, or a handoff (which pays no request), as the proposal that puts it to the federation. */
export function proposalFromPayment(
  payment: Pick<Payment, 'tx' | 'prevouts'> & { readonly requestIds?: readonly string[] },
  round: number,
  proposer: string,
): Proposal {
  return {
    version: 1,
    round,
    proposer,
    unsignedTx: serializeTx(payment.tx),
    prevouts: payment.prevouts.map((p) => ({ value: p.value, scriptPubKey: p.scriptPubKey })),
    requestIds: [...(payment.requestIds ?? [])],
  };
}

export function proposalTx(proposal: Proposal): Transaction {
  return parseTx(proposal.unsignedTx);
}

export function proposalTxid(proposal: Proposal): string {
  return txidOf(proposalTx(proposal));
}

export function proposalOutpoints(proposal: Proposal): Outpoint[] {
  return proposalTx(proposal).inputs.map((i) => ({ txid: i.txid, vout: i.vout }));
}

/**
 * Stages a proposal and the reservation of its inputs in one batch (the caller writes it with
 * sync, inside store.exclusive): a stored proposal always holds its inputs, and an input is
 * never reserved without the proposal that explains why.
 */
export async function stageProposal(
  batch: StoreBatch,
  checked: CheckedProposal,
  options: ReserveOptions = {},
): Promise<string> {
  const { txid, proposal } = checked;
  const outpoints = checked.tx.inputs.map((i) => ({ txid: i.txid, vout: i.vout }));
  await reserveUtxos(batch, outpoints, txid, options);
  batch.put(proposalKey(txid), proposal);
  for (const o of outpoints) batch.put(proposalInputKey(o.txid, o.vout, txid), 1);
  return txid;
}

/** Stored proposals spending `outpoint`, besides `except`. */
export async function proposalsSpending(store: Store, outpoint: Outpoint, except: string): Promise<string[]> {
  const out: string[] = [];
  for (const key of await store.keys({ prefix: proposalInputPrefix(outpoint.txid, outpoint.vout) })) {
    const txid = key.slice(key.lastIndexOf('/') + 1);
    if (txid !== except) out.push(txid);
  }
  return out;
}
