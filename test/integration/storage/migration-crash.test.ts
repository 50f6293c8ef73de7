import { RocksLevel } from '@nxtedition/rocksdb';
import { unpack } from 'msgpackr';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stageNewRequest } from '../../../src/evm/request-store.js';
import { META_KEY, txConfirmationKey, utxoIndexKey, utxoKey } from '../../../src/storage/keys.js';
import type { RequestStatus, StoreMeta, UtxoRecord, UtxoState } from '../../../src/storage/records.js';
import { SCHEMA_VERSION, Store } from '../../../src/storage/store.js';
import { testRequest } from '../../support/requests.js';
import { tempDir, TEST_DESCRIPTOR } from '../../support/tempdir.js';

/**
 * Crash safety of the store's migrations (SPEC §6): a child process opens a schema 4 store, which
 * runs every step to the current schema in synced chunks, and is killed with SIGKILL again and
 * again while it does. After every kill the store says either a version whose steps are all done
 * or the step it is in (migratingFrom), which the program of the older version refuses; once an
 * open runs to its end, the store is, key for key and byte for byte, the store an uninterrupted
 * migration of the same data made.
 */

const WORKER = fileURLToPath(new URL('../../support/open-store-worker.js', import.meta.url));
/** Several chunks (MIGRATION_CHUNK, 1,000) of each space a step rewrites. */
const REQUESTS = 4_000;
const UTXOS = 3_000;
const KILLS = 6;

const hash = (n: number): string => n.toString(16).padStart(64, '0');

/** The store as schema 4 wrote it: records with a seq and reqlog/ histories, reqsig/ payment keys, utxoidx/. */
async function schema4Store(dir: string): Promise<void> {
  const store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
  let batch = store.batch();
  for (let n = 0; n < REQUESTS; n++) {
    const status: RequestStatus = n % 3 === 0 ? 'paid' : n % 3 === 1 ? 'batched' : 'accepted';
    const txHash = `0x${hash(n)}`;
    const { history: _history, ...record } = stageNewRequest(
      store.batch(),
      testRequest({ txHash, sats: 1_000n + BigInt(n) }),
      'unused',
    );
    const part = `${txHash}/0000000000`;
    batch.put(`req/${part}`, { ...record, status, seq: status === 'accepted' ? 0 : 1 });
    batch.put(`reqidx/${status}/${part}`, 1);
    batch.put(`reqlog/${part}/0000000000`, { status: 'accepted', at: `t${n}` });
    if (status !== 'accepted') {
      batch.put(`reqlog/${part}/0000000001`, { status, at: `u${n}`, detail: `in payment ${hash(n + 1)}` });
      batch.put(`reqsig/${part}/${hash(n + 1)}`, 1);
      if (n % 2 === 0) batch.put(`reqsig/${part}/${hash(n + 2)}`, 1);
    }
    if (batch.length >= 2_000) {
      await batch.write();
      batch = store.batch();
    }
  }
  const states: UtxoState[] = ['unspent', 'reserved', 'spent'];
  for (let n = 0; n < UTXOS; n++) {
    const state = states[n % 3]!;
    const txid = hash(100_000 + n);
    batch
      .put(utxoKey(txid, 0), {
        txid,
        vout: 0,
        value: 10_000n + BigInt(n),
        scriptPubKey: Buffer.alloc(34, 1),
        height: n % 50 === 0 ? null : 100,
        state,
        ...(state === 'unspent' ? {} : { reservedBy: hash(7) }),
      } satisfies UtxoRecord)
      .put(utxoIndexKey(state, txid, 0), 1);
    // a payment's change (confirmed), which the ledger must not count as money that came in
    if (n % 5 === 0) batch.put(txConfirmationKey(txid), { height: 100, blockHash: hash(9) });
  }
  await batch.put(META_KEY, { schemaVersion: 4, descriptor: TEST_DESCRIPTOR }).write();
  await store.close();
}

/** Runs the worker on `dir`; kills it `killAfterMs` after it starts opening, if given. */
async function openInChild(
  t: { after(fn: () => Promise<void>): void },
  dir: string,
  killAfterMs?: number,
): Promise<{ outcome: 'done' | 'killed'; openMs: number }> {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // the child is a plain script, not a test file reporting to us
  const child = spawn(process.execPath, [WORKER, dir, TEST_DESCRIPTOR], { stdio: ['ignore', 'pipe', 'pipe'], env });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  let opened = 0;
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdout.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    if (opened === 0 && stdout.startsWith('open\n')) {
      opened = performance.now();
      if (killAfterMs !== undefined) setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    }
  });
  const limit = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  clearTimeout(limit);
  const openMs = performance.now() - opened;
  if (code === 0 && stdout === 'open\ndone\n') return { outcome: 'done', openMs };
  assert.equal(signal, 'SIGKILL', `the worker ended by itself (code ${code}): ${stderr}`);
  assert.ok(killAfterMs !== undefined, `the worker ran over two minutes: ${stderr}`);
  return { outcome: 'killed', openMs };
}

/** Every key and value of the store at `dir`, read raw: what two stores are compared by. */
async function everything(dir: string): Promise<Map<string, string>> {
  const db = new RocksLevel(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  const all = new Map<string, string>();
  try {
    for await (const [key, value] of db.iterator({})) all.set(key, value.toString('hex'));
  } finally {
    await db.close();
  }
  return all;
}

/** The keys whose values differ between two stores' contents, or that only one of them holds. */
function differences(a: Map<string, string>, b: Map<string, string>): string[] {
  return [...new Set([...a.keys(), ...b.keys()])].filter((key) => a.get(key) !== b.get(key));
}

function metaOf(all: Map<string, string>): StoreMeta {
  return unpack(Buffer.from(all.get(META_KEY)!, 'hex')) as StoreMeta;
}

test('a migration killed again and again resumes each time and ends as an uninterrupted one', async (t) => {
  const dir = await tempDir(t, 'migration-crash');
  await schema4Store(dir);
  const reference = path.join(await tempDir(t, 'migration-reference'), 'store');
  await cp(dir, reference, { recursive: true });
  const written = await everything(dir);
  const whole = await openInChild(t, reference);
  assert.equal(whole.outcome, 'done');
  const expected = await everything(reference);
  assert.deepEqual(metaOf(expected), { schemaVersion: SCHEMA_VERSION, descriptor: TEST_DESCRIPTOR });

  const seen: StoreMeta[] = [];
  for (let k = 0; k < KILLS; k++) {
    // spread over the uninterrupted open's length; each run resumes where the one before was cut
    const { outcome } = await openInChild(t, dir, (whole.openMs * (k + 1)) / (KILLS + 1));
    if (outcome === 'done') break;
    const now = await everything(dir);
    const meta = metaOf(now);
    seen.push(meta);
    // a store that still says 4 is the schema 4 program's: nothing of a step may be in it yet
    if (meta.schemaVersion === 4)
      assert.deepEqual(differences(written, now), [], 'keys a kill left changed under schema 4');
    const { schemaVersion, migratingFrom } = meta;
    assert.ok(schemaVersion >= 4 && schemaVersion <= SCHEMA_VERSION, `schema ${schemaVersion} after a kill`);
    // midway through a step the store already says the new version: the older program refuses it
    if (migratingFrom !== undefined) assert.equal(migratingFrom, schemaVersion - 1);
  }
  t.diagnostic(
    `uninterrupted open ${Math.round(whole.openMs)} ms; after each kill: ${seen.map((m) => `${m.migratingFrom ?? ''}→${m.schemaVersion}`).join(', ')}`,
  );
  assert.ok(
    seen.some((m) => m.migratingFrom !== undefined),
    `no kill landed inside a step (versions seen: ${JSON.stringify(seen.map((m) => m.schemaVersion))})`,
  );
  assert.equal((await openInChild(t, dir)).outcome, 'done');
  assert.deepEqual(
    differences(expected, await everything(dir)),
    [],
    'keys that differ from the uninterrupted migration',
  );
});
