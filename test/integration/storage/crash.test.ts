import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { cursorKey, requestIndexKey, SPACES } from '../../../src/storage/keys.js';
import { Store } from '../../../src/storage/store.js';
import {
  buildCrashChain,
  CRASH_KEEP_BLOCKS,
  CRASH_START_HEIGHT,
  replay,
  type Fork,
} from '../../support/crash-chain.js';
import { crashRequestId, type CrashProposal, type CrashRequest } from '../../support/crash-worker.js';
import type { ScriptedChain } from '../../support/scripted-chain.js';
import { tempDir, TEST_DESCRIPTOR } from '../../support/tempdir.js';
import type { BitcoinCursor, ObservedBlock, TxConfirmation, UtxoRecord } from '../../../src/storage/records.js';

/**
 * Crash safety (SPEC §6): a child process makes state transitions on a real store — requests
 * created and re-statused, UTXOs reserved/released by proposals, blocks applied and rolled back
 * by the observer — and is killed with SIGKILL at a random moment, round after round, each
 * round on a chain that forks below the stored cursor. After every kill the reopened store must
 * be exactly "some prefix of the work, whole batches only", with nothing acknowledged missing.
 */

const WORKER = fileURLToPath(new URL('../../support/crash-worker.js', import.meta.url));
const ROUNDS = 8;
const LAST_HEIGHT = CRASH_START_HEIGHT + 3000;

interface Acks {
  maxRequest: number;
  proposals: Set<string>;
  abandoned: Set<string>;
  blocks: number;
  transitions: number;
}

async function runAndKill(
  t: { after(fn: () => Promise<void>): void },
  dir: string,
  round: number,
  forks: Fork[],
  acks: Acks,
): Promise<void> {
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT; // the child is a plain script, not a test file reporting to us
  const child: ChildProcess = spawn(
    process.execPath,
    [WORKER, dir, String(round), JSON.stringify(forks), String(LAST_HEIGHT)],
    { stdio: ['ignore', 'pipe', 'pipe'], env },
  );
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );

  let pending = '';
  let killTimer: NodeJS.Timeout | undefined;
  const startupLimit = setTimeout(() => child.kill('SIGKILL'), 15_000);
  child.stdout?.on('data', (chunk: Buffer) => {
    pending += chunk.toString();
    const lines = pending.split('\n');
    pending = lines.pop() ?? '';
    for (const line of lines) {
      const [kind, value = ''] = line.split(' ');
      acks.transitions++;
      if (kind === 'R') acks.maxRequest = Math.max(acks.maxRequest, Number(value));
      else if (kind === 'P') acks.proposals.add(value);
      else if (kind === 'A') acks.abandoned.add(value);
      else if (kind === 'B') acks.blocks++;
    }
    if (killTimer === undefined) {
      clearTimeout(startupLimit);
      // the kill lands anywhere in the stream of writes: mid-batch, mid-rollback, between an fsync and its ack
      killTimer = setTimeout(() => child.kill('SIGKILL'), 100 + Math.floor(Math.random() * 900));
    }
  });
  const { code, signal } = await closed;
  clearTimeout(startupLimit);
  assert.equal(signal, 'SIGKILL', `worker round ${round} ended by itself (code ${code}): ${stderr}`);
  assert.ok(killTimer !== undefined, `worker round ${round} made no transition before the time limit: ${stderr}`);
}

async function all<T>(store: Store, prefix: string): Promise<[string, T][]> {
  const out: [string, T][] = [];
  for await (const entry of store.entries<T>({ prefix })) out.push(entry);
  return out;
}

async function verify(store: Store, chains: ScriptedChain[], acks: Acks): Promise<number> {
  // the cursor names a block of one of the chains the worker saw; the stored effects are those of
  // exactly the blocks from the start height up to it
  const cursor = await store.get<BitcoinCursor>(cursorKey('bitcoin'));
  const height = cursor?.height ?? CRASH_START_HEIGHT - 1;
  const chain =
    cursor === undefined ? undefined : [...chains].reverse().find((c) => c.best[cursor.height]?.hash === cursor.hash);
  assert.ok(
    cursor === undefined || chain !== undefined,
    `cursor ${cursor?.height}/${cursor?.hash} is on no chain the worker saw`,
  );
  const blocks = await all<ObservedBlock>(store, SPACES.bitcoinBlock);
  const firstKept = Math.max(CRASH_START_HEIGHT, height - CRASH_KEEP_BLOCKS + 1);
  assert.equal(blocks.length, height - firstKept + 1, 'one undo record per applied block still kept');
  blocks.forEach(([, block], i) =>
    assert.equal(block.hash, chain?.best[firstKept + i]?.hash, `undo record ${firstKept + i} is on the cursor's chain`),
  );

  const { outputs, payments } =
    chain === undefined ? { outputs: new Map(), payments: new Map() } : replay(chain, height);
  const records = new Map<string, UtxoRecord>();
  for (const [, record] of await all<UtxoRecord>(store, SPACES.utxo))
    records.set(`${record.txid}:${record.vout}`, record);
  const indexed = new Map<string, string>();
  for (const [key] of await all<number>(store, SPACES.utxoIndex)) {
    const [state, txid, vout] = key.slice(SPACES.utxoIndex.length).split('/');
    const name = `${txid}:${Number(vout)}`;
    assert.ok(!indexed.has(name), `${name} is indexed under two states`);
    indexed.set(name, state as string);
  }
  assert.equal(indexed.size, records.size, 'index entries = records');
  for (const [name, record] of records) {
    assert.equal(indexed.get(name), record.state, `index state of ${name}`);
    const expected = outputs.get(name);
    if (expected === undefined) {
      assert.deepEqual(
        [record.state, record.height],
        ['reserved', null],
        `${name} is on no applied block: only a reserved output of a rolled-back block may stay`,
      );
    } else if (expected.spentBy !== undefined) {
      assert.deepEqual([record.state, record.spentBy], ['spent', expected.spentBy], `${name} spent on chain`);
    } else {
      assert.ok(
        record.state === 'unspent' || record.state === 'reserved',
        `${name} unspent on chain but ${record.state}`,
      );
      assert.deepEqual([record.height, record.value], [expected.height, expected.value]);
    }
  }
  for (const name of outputs.keys())
    assert.ok(records.has(name), `federation output ${name} of an applied block is missing`);
  const confirmations = new Map(
    (await all<TxConfirmation>(store, SPACES.txConfirmation)).map(([key, c]) => [
      key.slice(SPACES.txConfirmation.length),
      c.height,
    ]),
  );
  assert.deepEqual(confirmations, payments, 'payment confirmations = spends of federation outputs in applied blocks');

  // requests: a gapless prefix covering every acknowledged one, each indexed under exactly its status
  const requests = (await all<CrashRequest>(store, SPACES.request)).map(([, r]) => r).sort((a, b) => a.i - b.i);
  requests.forEach((r, i) => assert.equal(r.i, i, `request ${i} lost (found ${r.i})`));
  assert.ok(requests.length > acks.maxRequest, `acknowledged request ${acks.maxRequest} lost`);
  const proposals = new Map(
    (await all<CrashProposal>(store, SPACES.proposal)).map(([key, p]) => [key.slice(SPACES.proposal.length), p]),
  );
  const indexedRequests = new Set((await all<number>(store, SPACES.requestIndex)).map(([key]) => key));
  assert.equal(indexedRequests.size, requests.length, 'request index entries = requests');
  for (const request of requests) {
    const id = crashRequestId(request.i);
    const indexKey = requestIndexKey(request.status, id.txHash, id.ordinal);
    assert.ok(indexedRequests.has(indexKey), `request ${request.i} is not indexed under its status ${request.status}`);
    if (request.status === 'batched') {
      const proposal = proposals.get(request.txid as string);
      assert.equal(proposal?.state, 'live', `request ${request.i} batched in a proposal that is not live`);
      assert.ok(proposal.requests.includes(request.i));
    }
  }
  // no request in two live proposals; every live proposal holds its inputs
  for (const [txid, proposal] of proposals) {
    if (acks.abandoned.has(txid)) assert.equal(proposal.state, 'abandoned', `acknowledged abandon of ${txid} lost`);
    if (proposal.state !== 'live') continue;
    for (const i of proposal.requests)
      assert.equal(requests[i]?.txid, txid, `request ${i} of live proposal ${txid} points elsewhere`);
    for (const input of proposal.inputs)
      assert.equal(
        records.get(`${input.txid}:${input.vout}`)?.reservedBy,
        txid,
        `input of live proposal ${txid} not held by it`,
      );
  }
  for (const txid of acks.proposals) assert.ok(proposals.has(txid), `acknowledged proposal ${txid} lost`);
  for (const [name, record] of records) {
    if (record.reservedBy !== undefined)
      assert.equal(
        proposals.get(record.reservedBy)?.state,
        'live',
        `${name} held by dead proposal ${record.reservedBy}`,
      );
  }
  return height;
}

test('SIGKILL at random moments loses no acknowledged transition and leaves only whole batches', async (t) => {
  const dir = path.join(await tempDir(t, 'crash'), 'member');
  const acks: Acks = { maxRequest: -1, proposals: new Set(), abandoned: new Set(), blocks: 0, transitions: 0 };
  const forks: Fork[] = [];
  const chains: ScriptedChain[] = [];
  let height = CRASH_START_HEIGHT - 1;
  let reorgs = 0;
  for (let round = 0; round < ROUNDS; round++) {
    if (height >= CRASH_START_HEIGHT) {
      forks.push({ height: Math.max(CRASH_START_HEIGHT, height - Math.floor(Math.random() * 10)), branch: round });
      reorgs++;
    }
    chains.push(buildCrashChain(forks, LAST_HEIGHT));
    await runAndKill(t, dir, round, forks, acks);
    const store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
    try {
      height = await verify(store, chains, acks);
    } finally {
      await store.close();
    }
  }
  t.diagnostic(
    `${acks.transitions} acknowledged transitions (${acks.blocks} block steps), ${reorgs} forks, final cursor ${height}`,
  );
  assert.ok(acks.transitions >= 1000, `expected thousands of transitions, got ${acks.transitions}`);
  assert.ok(reorgs >= ROUNDS - 2, 'rounds after the first resumed on a forked chain');
});
