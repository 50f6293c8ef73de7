import { federationFaultTolerance, type Federation } from '../bitcoin/federation.js';
import { parseTx } from '../bitcoin/tx.js';
import { confirmationsAt, storedTipHeight } from '../chain/observer.js';
import {
  countRequests,
  getRequest,
  getRequests,
  paymentsOfRequest,
  requestsByBitcoinAddress,
  requestsByEvmAddress,
  requestsOfEvmTx,
} from '../evm/request-store.js';
import type { ActivityPoint } from '../metrics/activity.js';
import {
  finalizedKey,
  signatureMadeKey,
  signatureReceivedPrefix,
  supersededKey,
  txConfirmationKey,
  txidOfFinalizedAt,
  SPACES,
} from '../storage/keys.js';
import type { ReserveAuditor } from '../node/reserves.js';
import { lastBroadcastAttempt, type LastAttempt } from '../node/settlement.js';
import type { ReserveReport } from '../wallet/reserves.js';
import { newestKeys, type Page, type PageRequest, type Store } from '../storage/store.js';
import { outpointText, utxoTotals } from '../wallet/utxos.js';
import { statusWords, timeline, type TimelineStep } from './lifecycle.js';
import type { Lookup, LookupKind } from './lookup.js';
import {
  everAccepted,
  type FinalizedRecord,
  type RequestRecord,
  type SignatureRecord,
  type StatusChange,
  type Supersession,
  type TxConfirmation,
} from '../storage/records.js';

/** A payment of a request as this member knows it. */
export interface PaymentStatus {
  readonly txid: string;
  /** k/t: signatures this member holds (its own and verified ones received), t once finalized. */
  readonly signatures: string;
  readonly finalized: boolean;
  readonly broadcastAttempts: number;
  /** Bitcoin Core's answer to the last attempt. */
  readonly lastBroadcast?: string;
  /** Some attempt was accepted (an error answer does not count). */
  readonly broadcast: boolean;
  /** In the best chain as this member sees it; 0 when not (or without Bitcoin Core). */
  readonly confirmations: number;
  readonly height?: number;
  readonly feeRate?: number;
  readonly at?: string;
  /** A payment of one of its requests with none of its inputs was finalized: this one can never reach t. */
  readonly supersededBy?: string;
  /** Earlier payments of the same request that this one spends an input of: it replaces them (RBF). */
  readonly replaces: readonly string[];
}

/** A request's lifecycle as operators and users see it. */
export interface PegoutStatus {
  readonly id: string;
  readonly txHash: string;
  readonly ordinal: number;
  readonly status: string;
  /** The status (or rejection reason) in plain words. */
  readonly says: string;
  readonly evmAddress: string;
  readonly bitcoinAddress: string;
  readonly sats: string;
  readonly block: number;
  readonly reason?: string;
  readonly detail?: string;
  readonly history: readonly StatusChange[];
  /** Payments that pay it: this member signed them, or they were finalized; oldest first. */
  readonly payments: readonly PaymentStatus[];
  readonly timeline: readonly TimelineStep[];
}

export interface LookupResult {
  readonly kind: LookupKind;
  readonly value: string;
  readonly pegouts: readonly PegoutStatus[];
  readonly next: string | null;
  /** bitcoinTxid only: the payment, its request count and the payments that replace it. */
  readonly payment?: PaymentStatus & { readonly requests: number; readonly replacedBy: readonly string[] };
}

export interface RecentPayment extends PaymentStatus {
  readonly requests: number;
}

/** The federation at a glance, for the operator page. */
export interface Overview {
  readonly federation: Record<string, unknown>;
  /** Every member: this one ('self'), or its link from here ('connected', 'banned', 'down'). */
  readonly members: readonly { readonly key: string; readonly link: string }[];
  readonly requests: Record<string, number>;
  readonly recentPayments: readonly RecentPayment[];
  readonly activity: readonly ActivityPoint[];
}

/** What the HTTP API reads; the member service provides it from its store and state. */
export interface StatusSource {
  health(): Promise<{ ok: boolean; status: 'ok' | 'degraded'; components: Record<string, unknown> }>;
  pegout(id: string): Promise<PegoutStatus | undefined>;
  /** undefined: a txid this member holds no payment of. */
  lookup(query: Lookup, page: PageRequest): Promise<LookupResult | undefined>;
  federation(): Promise<Record<string, unknown>>;
  /** The reserve audit (GET /reserves); undefined where the source has none. */
  reserves(): Promise<ReserveReport | undefined>;
  overview(): Promise<Overview>;
}

/** What the member knows beyond its store; each part has a default for a store alone (tests, tools). */
export interface MemberState {
  /** Extra /health components. */
  health(): Record<string, unknown>;
  /** This member's x-only key (hex). */
  readonly self?: string;
  /** The links to peers that are up or banned, by x-only key; a member not listed is down. */
  links(): ReadonlyMap<string, 'connected' | 'banned'>;
  /** Requests by status (the member reads its metrics, refreshed every second, rather than the index again). */
  requestCounts(): Promise<Record<string, number>>;
  activity(): readonly ActivityPoint[];
  /** Whether this member has Bitcoin Core to broadcast with. */
  readonly broadcasting: boolean;
  /** The member's reserve audit (GET /reserves); none for a store alone. */
  readonly reserves?: Pick<ReserveAuditor, 'report'>;
  /** The membership change this member takes part in, and how far it has come (node/handoff.ts). */
  readonly rotation?: () => Promise<Record<string, unknown>>;
}

/** How many payments the operator page lists. */
const RECENT_PAYMENTS = 10;

interface PaymentRecords {
  readonly made: SignatureRecord | undefined;
  readonly final: FinalizedRecord | undefined;
}

/** A payment with what its status is computed from: its requests and inputs. */
interface PaymentFacts extends Omit<PaymentStatus, 'replaces'> {
  readonly requestIds: readonly string[];
  readonly inputs: readonly string[];
}

function feeFacts(record: SignatureRecord | FinalizedRecord | undefined) {
  if (!record) return {};
  return { feeRate: Math.round((Number(record.fee) / record.vsize) * 100) / 100, at: record.at };
}

/**
 * Everything about one payment in a fixed number of store reads (three), whatever its size;
 * undefined when this member neither signed it nor holds it finalized.
 */
async function readPayment(
  store: Store,
  federation: Federation,
  txid: string,
  tip: number | undefined,
): Promise<PaymentFacts | undefined> {
  const [made, final, confirmation, superseded] = await store.getMany<unknown>([
    signatureMadeKey(txid),
    finalizedKey(txid),
    txConfirmationKey(txid),
    supersededKey(txid),
  ]);
  const received = (await store.keys({ prefix: signatureReceivedPrefix(txid) })).length;
  const last = await lastBroadcastAttempt(store, txid);
  const records = { made: made as SignatureRecord | undefined, final: final as FinalizedRecord | undefined };
  if (!records.made && !records.final) return undefined;
  return paymentFacts(federation, txid, records, {
    received,
    last,
    confirmation: confirmation as TxConfirmation | undefined,
    tip,
    superseded: superseded as Supersession | undefined,
  });
}

function paymentFacts(
  federation: Federation,
  txid: string,
  { made, final }: PaymentRecords,
  seen: {
    received: number;
    last: LastAttempt | undefined;
    confirmation: TxConfirmation | undefined;
    tip: number | undefined;
    superseded: Supersession | undefined;
  },
): PaymentFacts {
  const t = federation.threshold;
  const k = final ? t : Math.min(t, seen.received + (made ? 1 : 0));
  const last = seen.last?.attempt;
  return {
    txid,
    signatures: `${k}/${t}`,
    finalized: final !== undefined,
    broadcastAttempts: seen.last ? seen.last.seq + 1 : 0,
    ...(last ? { lastBroadcast: last.outcome } : {}),
    broadcast: last !== undefined && everAccepted(last),
    confirmations: confirmationsAt(seen.tip, seen.confirmation),
    ...(seen.confirmation ? { height: seen.confirmation.height } : {}),
    ...feeFacts(final ?? made),
    ...(seen.superseded ? { supersededBy: seen.superseded.by } : {}),
    requestIds: final?.requestIds ?? made?.requestIds ?? [],
    inputs: made?.inputs ?? (final ? parseTx(final.tx).inputs.map(outpointText) : []),
  };
}

/** Oldest first; each lists the earlier ones it shares an input with (it replaces them). */
export function withReplacements(payments: readonly PaymentFacts[]): PaymentStatus[] {
  const sorted = [...payments].sort((a, b) => (a.at ?? '').localeCompare(b.at ?? ''));
  return sorted.map(({ requestIds: _r, inputs, ...status }, i) => ({
    ...status,
    replaces: sorted
      .slice(0, i)
      .filter((earlier) => earlier.inputs.some((o) => inputs.includes(o)))
      .map((earlier) => earlier.txid),
  }));
}

/** The payment that carries the request now: confirmed first, then one nothing replaced, then finalized, newest. */
export function currentPayment(payments: readonly PaymentStatus[]): PaymentStatus | undefined {
  const replaced = new Set(payments.flatMap((p) => p.replaces));
  const rank = (p: PaymentStatus): number[] => [
    p.confirmations,
    replaced.has(p.txid) || p.supersededBy ? 0 : 1,
    p.finalized ? 1 : 0,
  ];
  let best: PaymentStatus | undefined;
  for (const p of payments) {
    if (!best) best = p;
    else {
      const [a, b] = [rank(p), rank(best)];
      const i = a.findIndex((x, j) => x !== b[j]);
      if (i < 0 || a[i]! > b[i]!) best = p;
    }
  }
  return best;
}

/** A view of one request in a lookup; a payment shared by several requests is read once. */
class LookupReader {
  private readonly payments = new Map<string, Promise<PaymentFacts | undefined>>();

  constructor(
    private readonly store: Store,
    private readonly federation: Federation,
    private readonly broadcasting: boolean,
    private readonly tip: number | undefined,
  ) {}

  static async open(store: Store, federation: Federation, broadcasting: boolean): Promise<LookupReader> {
    return new LookupReader(store, federation, broadcasting, await storedTipHeight(store));
  }

  payment(txid: string): Promise<PaymentFacts | undefined> {
    let p = this.payments.get(txid);
    if (!p) this.payments.set(txid, (p = readPayment(this.store, this.federation, txid, this.tip)));
    return p;
  }

  async pegout(r: RequestRecord): Promise<PegoutStatus> {
    const { txHash, ordinal } = r;
    const txids = await paymentsOfRequest(this.store, r);
    const found = await Promise.all(txids.map((txid) => this.payment(txid)));
    const payments = withReplacements(found.filter((p): p is PaymentFacts => p !== undefined));
    const { history } = r;
    const current = currentPayment(payments);
    return {
      id: r.id,
      txHash,
      ordinal,
      status: r.status,
      says: statusWords(r.status, r.reason),
      evmAddress: r.evmAddress,
      bitcoinAddress: r.bitcoinAddress,
      sats: r.sats.toString(),
      block: r.blockNumber,
      ...(r.reason ? { reason: r.reason } : {}),
      ...(r.detail ? { detail: r.detail } : {}),
      history,
      payments,
      timeline: timeline({
        status: r.status,
        ...(r.reason ? { reason: r.reason } : {}),
        block: r.blockNumber,
        txHash,
        history,
        ...(current ? { payment: current } : {}),
        broadcasting: this.broadcasting,
      }),
    };
  }

  pegouts(records: readonly RequestRecord[]): Promise<PegoutStatus[]> {
    return Promise.all(records.map((r) => this.pegout(r)));
  }
}

/** A payment's requests, in output order, a page at a time (the cursor is the next output index). */
async function byTxid(reader: LookupReader, store: Store, txid: string, page: PageRequest) {
  const facts = await reader.payment(txid);
  if (!facts) return undefined;
  const start = Number(page.cursor ?? 0);
  const ids = facts.requestIds.slice(start, start + page.limit);
  const records = (await getRequests(store, ids)).filter((r): r is RequestRecord => r !== undefined);
  const pegouts = await reader.pegouts(records);
  const all = pegouts.flatMap((p) => p.payments);
  const status = all.find((p) => p.txid === txid) ?? withReplacements([facts])[0]!;
  const replacedBy = [...new Set(all.filter((p) => p.replaces.includes(txid)).map((p) => p.txid))];
  return {
    pegouts,
    next: start + page.limit < facts.requestIds.length ? String(start + page.limit) : null,
    payment: { ...status, requests: facts.requestIds.length, replacedBy },
  };
}

async function lookupPage(store: Store, query: Lookup, page: PageRequest): Promise<Page<RequestRecord>> {
  if (query.kind === 'evmTx') return requestsOfEvmTx(store, query.value, page);
  if (query.kind === 'evmAddress') return requestsByEvmAddress(store, query.value, page);
  return requestsByBitcoinAddress(store, query.value, page);
}

/** The newest payments this member recorded as finalized, from the finalat/ index. */
async function recentPayments(reader: LookupReader, store: Store): Promise<RecentPayment[]> {
  const { items } = await newestKeys(store, SPACES.finalizedAt, { limit: RECENT_PAYMENTS });
  const found = await Promise.all(items.map((key) => reader.payment(txidOfFinalizedAt(key))));
  return found
    .filter((p): p is PaymentFacts => p !== undefined)
    .map(({ requestIds, inputs: _inputs, ...status }) => ({ ...status, replaces: [], requests: requestIds.length }));
}

async function federationSummary(
  store: Store,
  federation: Federation,
  rotation: MemberState['rotation'],
): Promise<Record<string, unknown>> {
  const unspent = await utxoTotals(store, 'unspent');
  const reserved = await utxoTotals(store, 'reserved');
  return {
    descriptor: federation.descriptor,
    address: federation.address,
    network: federation.network,
    threshold: federation.threshold,
    members: federation.pubkeys.map((k) => Buffer.from(k).toString('hex')),
    faultTolerance: federationFaultTolerance(federation),
    balance: {
      unspentSats: unspent.sats.toString(),
      reservedSats: reserved.sats.toString(),
      unspentOutputs: unspent.outputs,
      reservedOutputs: reserved.outputs,
    },
    ...(rotation ? { rotation: await rotation() } : {}),
  };
}

function storeDefaults(store: Store): MemberState {
  return {
    health: () => ({}),
    links: () => new Map(),
    requestCounts: async () => Object.fromEntries(await countRequests(store)),
    activity: () => [],
    broadcasting: true,
  };
}

/** The store's view: requests with their history and payments, the federation's funds, the member's state. */
export function storeStatusSource(
  store: Store,
  federation: Federation,
  member: Partial<MemberState> = {},
): StatusSource {
  const state: MemberState = { ...storeDefaults(store), ...member };
  const reader = () => LookupReader.open(store, federation, state.broadcasting);
  const summary = () => federationSummary(store, federation, state.rotation);
  return {
    health: async () => {
      const components: Record<string, unknown> = { store: 'open', ...state.health() };
      // the member says what needs an operator (paused, alarms): anything listed there is a degraded member
      const degraded = Array.isArray(components.degraded) ? components.degraded.length > 0 : false;
      return { ok: !degraded, status: degraded ? 'degraded' : 'ok', components };
    },
    reserves: async () => state.reserves?.report(),
    async pegout(id) {
      const r = await getRequest(store, id);
      return r ? (await reader()).pegout(r) : undefined;
    },
    async lookup(query, page) {
      const view = await reader();
      if (query.kind === 'bitcoinTxid') {
        const found = await byTxid(view, store, query.value, page);
        return found && { kind: query.kind, value: query.value, ...found };
      }
      const { items, next } = await lookupPage(store, query, page);
      return { kind: query.kind, value: query.value, pegouts: await view.pegouts(items), next };
    },
    federation: summary,
    async overview() {
      const links = state.links();
      const members = federation.pubkeys.map((k) => {
        const key = Buffer.from(k).toString('hex');
        return { key, link: key === state.self ? 'self' : (links.get(key) ?? 'down') };
      });
      return {
        federation: await summary(),
        members,
        requests: await state.requestCounts(),
        recentPayments: await recentPayments(await reader(), store),
        activity: state.activity(),
      };
    },
  };
}
