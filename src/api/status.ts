import { federationFaultTolerance, type Federation } from '../bitcoin/federation.js';
import { getRequest, listRequestsByEvmAddress, requestHistory } from '../evm/request-store.js';
import type { Store } from '../storage/store.js';
import { listUtxos } from '../wallet/utxos.js';
import { parseRequestId } from '../evm/request-id.js';
import {
  broadcastPrefix,
  finalizedKey,
  requestSignedPrefix,
  signatureMadeKey,
  signatureReceivedPrefix,
} from '../storage/keys.js';
import type { ReserveAuditor } from '../node/reserves.js';
import type { ReserveReport } from '../wallet/reserves.js';
import type { RequestRecord, StatusChange } from '../storage/records.js';

/** A request's lifecycle as operators and users see it. */
export interface PegoutStatus {
  readonly id: string;
  readonly status: string;
  readonly evmAddress: string;
  readonly bitcoinAddress: string;
  readonly sats: string;
  readonly block: number;
  readonly reason?: string;
  readonly detail?: string;
  readonly history: readonly StatusChange[];
  /** Payments that pay it: this member's signature or a finalized one; signatures as k of t. */
  readonly payments: readonly PaymentStatus[];
}

export interface PaymentStatus {
  readonly txid: string;
  readonly signatures: string;
  readonly finalized: boolean;
  readonly broadcastAttempts: number;
}

/** What the HTTP API reads; the member service provides it from its store and state. */
export interface StatusSource {
  health(): Promise<{ ok: boolean; status: 'ok' | 'degraded'; components: Record<string, unknown> }>;
  pegout(id: string): Promise<PegoutStatus | undefined>;
  pegoutsByEvmAddress(evmAddress: string, limit: number): Promise<PegoutStatus[]>;
  federation(): Promise<Record<string, unknown>>;
  /** The reserve audit (GET /reserves); undefined where the source has none. */
  reserves(): Promise<ReserveReport | undefined>;
}

async function payments(store: Store, federation: Federation, id: string): Promise<PaymentStatus[]> {
  const { txHash, ordinal } = parseRequestId(id);
  const out: PaymentStatus[] = [];
  for await (const [key] of store.entries({ prefix: requestSignedPrefix(txHash, ordinal) })) {
    const txid = key.slice(key.lastIndexOf('/') + 1);
    const [own, final] = await store.getMany([signatureMadeKey(txid), finalizedKey(txid)]);
    let received = 0;
    for await (const _ of store.entries({ prefix: signatureReceivedPrefix(txid) })) received++;
    let attempts = 0;
    for await (const _ of store.entries({ prefix: broadcastPrefix(txid) })) attempts++;
    const k = final ? federation.threshold : Math.min(federation.threshold, received + (own ? 1 : 0));
    out.push({
      txid,
      signatures: `${k}/${federation.threshold}`,
      finalized: final !== undefined,
      broadcastAttempts: attempts,
    });
  }
  return out;
}

function summary(r: RequestRecord, history: readonly StatusChange[], paidBy: readonly PaymentStatus[]): PegoutStatus {
  return {
    id: r.id,
    status: r.status,
    evmAddress: r.evmAddress,
    bitcoinAddress: r.bitcoinAddress,
    sats: r.sats.toString(),
    block: r.blockNumber,
    ...(r.reason ? { reason: r.reason } : {}),
    ...(r.detail ? { detail: r.detail } : {}),
    history,
    payments: paidBy,
  };
}

/** The store's view: requests with their history, and the federation's funds; the member's reserve audit. */
export function storeStatusSource(
  store: Store,
  federation: Federation,
  health: () => Record<string, unknown> = () => ({}),
  member: { reserves?: Pick<ReserveAuditor, 'report'> } = {},
): StatusSource {
  return {
    health: async () => {
      const components: Record<string, unknown> = { store: 'open', ...health() };
      // the member says what needs an operator (paused, alarms): anything listed there is a degraded member
      const degraded = Array.isArray(components.degraded) ? components.degraded.length > 0 : false;
      return { ok: !degraded, status: degraded ? 'degraded' : 'ok', components };
    },
    reserves: async () => member.reserves?.report(),
    async pegout(id) {
      const r = await getRequest(store, id);
      return r ? summary(r, await requestHistory(store, id), await payments(store, federation, id)) : undefined;
    },
    async pegoutsByEvmAddress(evmAddress, limit) {
      const wanted = evmAddress.toLowerCase();
      const found = await listRequestsByEvmAddress(store, wanted, limit);
      return Promise.all(
        found.map(async (r) => summary(r, await requestHistory(store, r.id), await payments(store, federation, r.id))),
      );
    },
    async federation() {
      const unspent = await listUtxos(store, 'unspent');
      const reserved = await listUtxos(store, 'reserved');
      const sum = (list: { value: bigint }[]) => list.reduce((a, u) => a + u.value, 0n).toString();
      return {
        descriptor: federation.descriptor,
        address: federation.address,
        network: federation.network,
        threshold: federation.threshold,
        members: federation.pubkeys.map((k) => Buffer.from(k).toString('hex')),
        faultTolerance: federationFaultTolerance(federation),
        balance: {
          unspentSats: sum(unspent),
          reservedSats: sum(reserved),
          unspentOutputs: unspent.length,
          reservedOutputs: reserved.length,
        },
      };
    },
  };
}
