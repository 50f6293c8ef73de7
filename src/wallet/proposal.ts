import { proposalInputKey, proposalInputPrefix, proposalKey } from '../storage/keys.js';
import type { Store, StoreBatch } from '../storage/store.js';
import { parseTx, serializeTx, txid as txidOf, type Prevout, type Transaction } from '../bitcoin/tx.js';
import type { Payment } from './payment.js';
import { reserveUtxos, type Outpoint } from './utxos.js';

/**
 * What a proposer sends and every member checks before signing. Plain data (bytes, strings,
 * numbers, bigint), so it travels as msgpack and is stored as is.
 */
export interface Proposal {
  readonly version: 1;
  readonly round: number;
  /** x-only key of the proposer, hex. */
  readonly proposer: string;
  /** The unsigned transaction, serialized. */
  readonly unsignedTx: Uint8Array;
  readonly prevouts: readonly Prevout[];
  /** Request paid by each peg-out output, in output order; a further last output is change. */
  readonly requestIds: readonly string[];
}

export function proposalFromPayment(payment: Payment, round: number, proposer: string): Proposal {
  return {
    version: 1,
    round,
    proposer,
    unsignedTx: serializeTx(payment.tx),
    prevouts: payment.prevouts.map((p) => ({ value: p.value, scriptPubKey: p.scriptPubKey })),
    requestIds: [...payment.requestIds],
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
export async function stageProposal(batch: StoreBatch, proposal: Proposal, options: { replacing?: readonly string[] } = {}): Promise<string> {
  const txid = proposalTxid(proposal);
  const outpoints = proposalOutpoints(proposal);
  await reserveUtxos(batch, outpoints, txid, options);
  batch.put(proposalKey(txid), proposal);
  for (const o of outpoints) batch.put(proposalInputKey(o.txid, o.vout, txid), 1);
  return txid;
}

/** Stored proposals spending `outpoint`, besides `except`. */
export async function proposalsSpending(store: Store, outpoint: Outpoint, except: string): Promise<string[]> {
  const out: string[] = [];
  for await (const [key] of store.entries({ prefix: proposalInputPrefix(outpoint.txid, outpoint.vout) })) {
    const txid = key.slice(key.lastIndexOf('/') + 1);
    if (txid !== except) out.push(txid);
  }
  return out;
}
