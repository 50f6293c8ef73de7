import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encodeAddress } from '../../src/bitcoin/address.js';
import { witnessScript } from '../../src/bitcoin/script.js';
import { requestId } from '../../src/evm/request-id.js';
import {
  getRequests,
  paymentsOfRequests,
  requestsOf,
  stageNewRequest,
  stagePaymentOf,
  stageStatus,
  type NewRequest,
} from '../../src/evm/request-store.js';
import { STAGE_CLOCK, timeAsync, type Stage } from '../../src/metrics/stages.js';
import type { RequestRecord } from '../../src/storage/records.js';
import { Store } from '../../src/storage/store.js';
import { benchArgs, resultsDir } from '../e2e/args.js';
import { roundLine, timed, total, type Phase } from '../e2e/phases.js';

// What the store's layout alone costs a member per request: the reads and writes a request's life
// takes in the member's own functions (src/evm/request-store.ts), on a real store, with nothing else
// (no decision, no validation logic, no signing, no links). bench:member measures the whole
// bookkeeping; this is the part of it a change of the layout would move, and a floor under it:
// whatever else a member does per request comes on top.

const HELP = `npm run bench:store -- [--requests K] [--payment P] [--rounds R] [--out DIR]
  --requests K   requests in each round (default 10000)
  --payment P    requests in each payment: the sign and finalize phases write one synced batch
                 per payment (default 1000, bench:e2e's largest)
  --rounds R     rounds on one store (default 6); the first warms the code up and is left out of
                 the mean
  --out DIR      where store.json goes (default bench/results)

Per request, as the member does them: ingest reads the request's record (the duplicate check, a
key not yet written) and writes its record, status index entry and two address index entries
(4 keys; the status counters once a batch); signing reads its record and payment list and writes
its record, moves its index entry (2 keys) and writes its payment list (4 keys); finalization
reads both again and writes its record (1 key). 9 keys written, 5 read, the record encoded 3 times.`;

const { values, positive } = benchArgs('bench:store', HELP, {
  requests: { type: 'string', default: '10000' },
  payment: { type: 'string', default: '1000' },
  rounds: { type: 'string', default: '6' },
  out: { type: 'string' },
});
const requests = positive(values.requests as string, '--requests');
const perPayment = positive(values.payment as string, '--payment');
const rounds = positive(values.rounds as string, '--rounds');

type Phases = Record<'ingest' | 'sign' | 'finalize', Phase>;

/**
 * `fn` run as a section of `stage` as the member runs it (the observer's decide, the signer's
 * validation, finalize_record), so that each store put is a nested section, as there; timed.
 */
const staged = (stage: Stage, fn: () => Promise<void>): Promise<Phase> => timed(requests, () => timeAsync(stage, fn));

/** New requests as ingestion stages them, each to its own P2WPKH address. */
function newRequests(): NewRequest[] {
  return Array.from({ length: requests }, () => {
    const txHash = `0x${randomBytes(32).toString('hex')}`;
    const scriptPubKey = witnessScript(0, randomBytes(20));
    return {
      id: requestId(txHash, 0),
      txHash,
      ordinal: 0,
      blockNumber: 1,
      blockHash: `0x${randomBytes(32).toString('hex')}`,
      evmAddress: `0x${randomBytes(20).toString('hex')}`,
      bitcoinAddress: encodeAddress(scriptPubKey, 'regtest'),
      wei: '15000000000000000',
      sats: 1_500_000n,
      subSatoshiWei: '0',
      status: 'accepted',
      scriptPubKey,
    };
  });
}

/**
 * A payment's requests moved to `status` as the signer (batched) or the finalizer (signed) does it:
 * records and payment lists read in one call each, the payment added to each list, one synced batch.
 */
async function pay(store: Store, records: readonly RequestRecord[], txid: string, status: 'batched' | 'signed') {
  const at = new Date().toISOString();
  await store.transaction(async (batch) => {
    const current = await requestsOf(batch, records);
    const lists = await paymentsOfRequests(batch, records);
    for (const [i, r] of current.entries()) {
      stagePaymentOf(batch, r!, lists[i]!, txid);
      stageStatus(batch, r!, status, at, status === 'batched' ? `in payment ${txid}` : `finalized in ${txid}`);
    }
  });
}

async function round(store: Store): Promise<Phases> {
  const fresh = newRequests();
  let records: RequestRecord[] = [];
  const ingest = await staged('decide', () =>
    store.transaction(async (batch) => {
      const at = new Date().toISOString();
      const known = await getRequests(
        batch,
        fresh.map((r) => r.id),
      );
      records = fresh.flatMap((r, i) => (known[i] ? [] : [stageNewRequest(batch, r, at)]));
    }),
  );
  const payments = Array.from({ length: Math.ceil(requests / perPayment) }, (_, k) => ({
    txid: randomBytes(32).toString('hex'),
    records: records.slice(k * perPayment, (k + 1) * perPayment),
  }));
  const sign = await staged('validation', async () => {
    for (const p of payments) await pay(store, p.records, p.txid, 'batched');
  });
  const finalize = await staged('finalize_record', async () => {
    for (const p of payments) await pay(store, p.records, p.txid, 'signed');
  });
  return { ingest, sign, finalize };
}

async function main(): Promise<void> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pegout-bench-store-'));
  const store = await Store.open(dir, { descriptor: 'bench:store' });
  try {
    const results: Phases[] = [];
    for (let r = 0; r < rounds; r++) {
      const result = await round(store);
      results.push(result);
      process.stderr.write(roundLine(r + 1, result));
    }
    const measured = results.length > 1 ? results.slice(1) : results;
    const mean = (figure: keyof Phase): number => measured.reduce((a, r) => a + total(r, figure), 0) / measured.length;
    process.stderr.write(
      `rounds ${results.length > 1 ? `2–${results.length}` : '1'}, mean: main thread ${mean('mainUs').toFixed(1)} µs/request, process ${mean('processUs').toFixed(1)}\n`,
    );
    const out = resultsDir(values.out);
    await mkdir(out, { recursive: true });
    await writeFile(
      path.join(out, 'store.json'),
      `${JSON.stringify({ requests, perPayment, clock: STAGE_CLOCK, mainUs: mean('mainUs'), processUs: mean('processUs'), rounds: results }, null, 2)}\n`,
    );
  } finally {
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
