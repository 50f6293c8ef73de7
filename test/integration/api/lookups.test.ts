import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { storeStatusSource, type LookupResult } from '../../../src/api/status.js';
import type { Lookup } from '../../../src/api/lookup.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { parseRequestId } from '../../../src/evm/request-id.js';
import { paymentsOfRequest, stageNewRequest, stagePaymentOf } from '../../../src/evm/request-store.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { registerUtxo } from '../../../src/wallet/utxos.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import { refreshMetrics } from '../../../src/node/member.js';
import type { PeerNetwork } from '../../../src/p2p/network.js';
import {
  broadcastKey,
  finalizedAtKey,
  finalizedKey,
  signatureMadeKey,
  txConfirmationKey,
  cursorKey,
} from '../../../src/storage/keys.js';
import type { Store } from '../../../src/storage/store.js';
import { counted } from '../../support/counted-store.js';
import { openTempStore } from '../../support/tempdir.js';
import { testRequest } from '../../support/requests.js';
import type { SignatureRecord } from '../../../src/storage/records.js';

// Every lookup the status pages make is answered from an index: with 100,000 requests stored, a
// page of 20 costs a bounded number of store reads, counted (never timed) by wrapping the store.

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i + 80))),
});
const REQUESTS = 100_000;
const PAYMENTS = 1_000;
const hash = (n: number): string => `0x${n.toString(16).padStart(64, '0')}`;
const txid = (n: number): string => n.toString(16).padStart(64, '0');
const ALICE = `0x${'a1'.repeat(20)}`;
const CAROL = 'bcrt1qcarolcarolcarolcarolcarolcarolcarol';
/** Four requests per EVM transaction, one transaction per block. */
const requestAt = (n: number) => ({ txHash: hash(Math.floor(n / 4)), ordinal: n % 4, block: Math.floor(n / 4) + 1 });

/** At most this many store calls (get, getMany, keys, entries) and rows (keys or values) for one page of 20. */
const MAX_CALLS = 60;
const MAX_ROWS = 400;

async function fill(store: Store): Promise<void> {
  for (let from = 0; from < REQUESTS; from += 5000) {
    const batch = store.batch();
    for (let n = from; n < from + 5000; n++) {
      const { txHash, ordinal, block } = requestAt(n);
      stageNewRequest(
        batch,
        testRequest({
          txHash,
          ordinal,
          blockNumber: block,
          blockHash: hash(block),
          // half of them burned by Alice, the other half paid to Carol: each index has 50,000 entries to skip
          evmAddress: n % 2 === 0 ? ALICE : `0x${(n + 1).toString(16).padStart(40, '0')}`,
          bitcoinAddress: n % 2 === 1 ? CAROL : `bcrt1q${n}`,
          wei: '15000000000000000',
          sats: 1_500_000n,
          status: 'signed',
        }),
        '2026-11-25T00:00:00.000Z',
      );
    }
    await batch.write();
  }
}

/**
 * PAYMENTS payments of 100 requests each, the first paying the newest; then one more that replaces the first
 * (same requests, same input, later). Each signed here, finalized, broadcast and confirmed.
 */
async function pay(store: Store): Promise<string> {
  const batch = store.batch();
  for (let p = 0; p <= PAYMENTS; p++) {
    const slot = p === PAYMENTS ? 0 : p;
    const first = REQUESTS - 100 * (slot + 1);
    const ids = Array.from({ length: 100 }, (_, i) => {
      const { txHash, ordinal } = requestAt(first + i);
      return `${txHash}:${ordinal}`;
    });
    const at = new Date(Date.UTC(2026, 10, 25, 0, 0, p)).toISOString();
    const made: SignatureRecord = {
      txid: txid(p),
      requestIds: ids,
      fee: 10_000n,
      vsize: 5_000,
      at,
      inputs: [`${txid(100_000 + slot)}:0`],
      signatures: new Uint8Array(64),
    };
    batch.put(signatureMadeKey(txid(p)), made);
    batch.put(finalizedKey(txid(p)), { ...made, tx: new Uint8Array(0), prevouts: [], unmatched: {}, conflicts: [] });
    batch.put(finalizedAtKey(at, txid(p)), 1);
    batch.put(txConfirmationKey(txid(p)), { height: 100, blockHash: txid(7) });
    batch.put(broadcastKey(txid(p), 0), { at, height: 99, outcome: 'sent' });
    for (const request of ids.map(parseRequestId))
      stagePaymentOf(batch, request, await paymentsOfRequest(batch, request), txid(p));
  }
  batch.put(cursorKey('bitcoin'), { height: 105, hash: txid(8) });
  await batch.write();
  return txid(PAYMENTS);
}

/** Dust outputs paying the federation, each a record and an index entry. */
const DUST = 10_000n;

async function dust(store: Store): Promise<void> {
  const batch = store.batch();
  for (let i = 0; i < DUST; i++)
    await registerUtxo(batch, {
      txid: txid(1_000_000 + i),
      vout: 0,
      value: 546n,
      scriptPubKey: federation.scriptPubKey,
      height: 100,
      pegIn: true,
    });
  await batch.write();
}

describe('lookups over 100,000 stored requests and 10,000 dust outputs', async () => {
  it(`answer a page of 20, and the federation's balances, in at most ${MAX_CALLS} store reads of at most ${MAX_ROWS} rows`, async (t) => {
    const store = await openTempStore(t, federation.descriptor);
    await fill(store);
    const replacement = await pay(store);
    await dust(store);
    const { store: view, reads } = counted(store);
    const source = storeStatusSource(view, federation, { requestCounts: async () => ({}) });
    const measure = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
      Object.assign(reads, { calls: 0, rows: 0 });
      const out = await fn();
      t.diagnostic(`${what}: ${reads.calls} store calls, ${reads.rows} rows`);
      assert.ok(reads.calls <= MAX_CALLS, `${what}: ${reads.calls} store calls`);
      assert.ok(reads.rows <= MAX_ROWS, `${what}: ${reads.rows} rows read`);
      return out;
    };
    const page = { limit: 20 };
    const look = (lookup: Lookup, p: { limit: number; cursor?: string } = page) =>
      measure(`${lookup.kind} ${p.cursor ?? ''}`, async () => (await source.lookup(lookup, p)) as LookupResult);

    const byAlice = await look({ kind: 'evmAddress', value: ALICE });
    assert.equal(byAlice.pegouts.length, 20);
    assert.ok(byAlice.pegouts.every((p) => p.evmAddress === ALICE));
    assert.deepEqual(
      byAlice.pegouts.map((p) => p.block),
      [...byAlice.pegouts.map((p) => p.block)].sort((a, b) => b - a),
      'newest first',
    );
    assert.equal(byAlice.pegouts[0]!.block, requestAt(REQUESTS - 1).block);
    const older = await look({ kind: 'evmAddress', value: ALICE }, { limit: 20, cursor: byAlice.next! });
    assert.ok(older.pegouts[0]!.block <= byAlice.pegouts[19]!.block);
    assert.ok(!older.pegouts.some((p) => byAlice.pegouts.some((q) => q.id === p.id)), 'the next page repeats none');

    const toCarol = await look({ kind: 'bitcoinAddress', value: CAROL });
    assert.equal(toCarol.pegouts.length, 20);
    assert.ok(toCarol.pegouts.every((p) => p.bitcoinAddress === CAROL));

    // the newest request: paid by the last payment, which replaced the one before (same input)
    const newest = requestAt(REQUESTS - 1);
    const ofTx = await look({ kind: 'evmTx', value: newest.txHash });
    assert.deepEqual(
      ofTx.pegouts.map((p) => p.ordinal),
      [3, 2, 1, 0],
    );
    const payments = ofTx.pegouts[0]!.payments;
    assert.deepEqual(
      payments.map((p) => [p.txid, p.replaces, p.confirmations]),
      [
        [txid(0), [], 6],
        [replacement, [txid(0)], 6],
      ],
    );

    const byTxid = await look({ kind: 'bitcoinTxid', value: replacement });
    assert.equal(byTxid.pegouts.length, 20);
    assert.equal(byTxid.next, '20');
    assert.deepEqual(
      [byTxid.payment!.requests, byTxid.payment!.replaces, byTxid.payment!.signatures],
      [100, [txid(0)], '2/2'],
    );
    const replaced = await look({ kind: 'bitcoinTxid', value: txid(0) }, { limit: 20, cursor: '80' });
    assert.equal(replaced.next, null);
    assert.deepEqual(replaced.payment!.replacedBy, [replacement]);

    const one = await measure('pegout', () => source.pegout(`${newest.txHash}:0`));
    assert.equal(one!.timeline.find((s) => s.step === 'confirmations')!.text, '6 confirmations');
    // outputs anyone can send the federation, however small: the balances are counted, never listed
    const balance = await measure('federation', () => source.federation());
    assert.deepEqual(balance.balance, {
      unspentSats: String(DUST * 546n),
      reservedSats: '0',
      unspentOutputs: Number(DUST),
      reservedOutputs: 0,
    });
    // and so does the member's metrics refresh, every second
    const metrics = createMetrics();
    const links = { stats: { connected: 0, dropped: {} } } as unknown as Pick<PeerNetwork, 'stats'>;
    await measure('metrics refresh', () => refreshMetrics(view, metrics, links, new Map()));
    const gauge = async (name: string): Promise<{ value: number; labels: Record<string, unknown> }[]> =>
      (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name)!.values;
    assert.equal((await gauge('pegout_utxos')).find((v) => v.labels.state === 'unspent')?.value, Number(DUST));
    assert.equal((await gauge('pegout_balance_sats'))[0]?.value, Number(DUST * 546n));
    const overview = await measure('overview', () => source.overview());
    assert.equal(overview.recentPayments.length, 10);
    assert.equal(overview.recentPayments[0]!.txid, replacement, 'the newest payment first');
  });
});
