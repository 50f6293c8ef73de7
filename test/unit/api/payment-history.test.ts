import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { startApi } from '../../../src/api/server.js';
import { storeStatusSource } from '../../../src/api/status.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { parseRequestId } from '../../../src/evm/request-id.js';
import { paymentsOfRequest, stageNewRequest, stagePaymentOf } from '../../../src/evm/request-store.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { broadcastKey, cursorKey, finalizedAtKey, finalizedKey, signatureMadeKey } from '../../../src/storage/keys.js';
import type { SignatureRecord } from '../../../src/storage/records.js';
import { counted } from '../../support/counted-store.js';
import { testRequest } from '../../support/requests.js';
import { openTempStore } from '../../support/tempdir.js';

// A payment that waits unconfirmed is rebroadcast once a block has passed (Settlement.tick), and each
// attempt at a new height is a broadcast/<txid>/<seq> row: two weeks of a low-fee (or refused) payment
// is about 2,000 rows. readPayment (src/api/status.ts) read every one of them to answer
// broadcastAttempts, lastBroadcast and broadcast, on every /pegouts/:id, /pegouts?… and /overview, for
// anyone: the rows one outsider's request read grew with the payment's history, not a fixed bound.

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i + 90))),
});
const TX = `0x${'cd'.repeat(32)}`;
const PAYMENT = 'ef'.repeat(32);
/** Blocks the payment waited unconfirmed: one recorded attempt per block (about two weeks). */
const ATTEMPTS = 2_000;
/** The bound the existing lookup test holds a page of 20 to (test/integration/api/lookups.test.ts). */
const MAX_ROWS = 400;

describe('an outsider lookup of a payment that waited many blocks', () => {
  it(`reads at most ${MAX_ROWS} store rows, however many broadcast attempts the payment has`, async (t) => {
    const store = await openTempStore(t, federation.descriptor);
    const batch = store.batch();
    const at = '2026-11-25T00:00:00.000Z';
    stageNewRequest(
      batch,
      testRequest({ txHash: TX, ordinal: 0, bitcoinAddress: 'bcrt1qvictim', sats: 1_500_000n, status: 'signed' }),
      at,
    );
    const made: SignatureRecord = {
      txid: PAYMENT,
      requestIds: [`${TX}:0`],
      fee: 1_000n,
      vsize: 200,
      at,
      inputs: [`${'01'.repeat(32)}:0`],
      signatures: new Uint8Array(64),
    };
    batch.put(signatureMadeKey(PAYMENT), made);
    batch.put(finalizedKey(PAYMENT), { ...made, tx: new Uint8Array(0), prevouts: [], unmatched: {}, conflicts: [] });
    batch.put(finalizedAtKey(at, PAYMENT), 1);
    // what Settlement.broadcast records for a payment the node holds but no block takes: one per height
    for (let seq = 0; seq < ATTEMPTS; seq++)
      batch.put(broadcastKey(PAYMENT, seq), { at, height: 100 + seq, outcome: PAYMENT });
    const request = parseRequestId(`${TX}:0`);
    stagePaymentOf(batch, request, await paymentsOfRequest(batch, request), PAYMENT);
    batch.put(cursorKey('bitcoin'), { height: 100 + ATTEMPTS, hash: '02'.repeat(32) });
    await batch.write();

    const { store: view, reads } = counted(store);
    const api = await startApi({
      host: '127.0.0.1',
      port: 0,
      source: storeStatusSource(view, federation, { requestCounts: async () => ({}) }),
      registry: createMetrics().registry,
    });
    t.after(() => api.close());
    const base = `http://127.0.0.1:${api.port}`;
    const read: string[] = [];
    for (const path of [`/pegouts/${encodeURIComponent(`${TX}:0`)}`, `/pegouts?bitcoinTxid=${PAYMENT}`, '/overview']) {
      Object.assign(reads, { calls: 0, rows: 0 });
      const res = await fetch(`${base}${path}`, { signal: AbortSignal.timeout(10_000) });
      assert.ok(res.status === 200, `${path}: ${res.status}`);
      await res.arrayBuffer();
      t.diagnostic(`${path}: ${reads.calls} store calls, ${reads.rows} rows`);
      if (reads.rows > MAX_ROWS) read.push(`GET ${path} read ${reads.rows} store rows`);
    }
    assert.deepEqual(read, [], 'one outsider request each');
  });
});
