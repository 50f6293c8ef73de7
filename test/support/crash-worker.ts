/**
 * Child process of test/storage/crash.test.ts: performs state transitions on a real store as
 * fast as it can until the parent kills it with SIGKILL. Every transition is one batch;
 * after each durable (sync) write it prints an acknowledgement line, which the parent later
 * holds the reopened store to.
 *
 * argv: <store dir> <round> <forks JSON> <last chain height>
 * stdout lines: `R <i>` request i created, `P <txid>` proposal made, `A <txid>` proposal
 * abandoned, `B <height>` cursor advanced (not synced: a process crash still keeps it).
 */
import { BitcoinObserver } from '../../src/chain/observer.js';
import { requestIndexKey, requestKey, proposalKey, SPACES } from '../../src/storage/keys.js';
import { Store } from '../../src/storage/store.js';
import { listUnspent, releaseUtxos, reserveUtxos, type Outpoint } from '../../src/wallet/utxos.js';
import { buildCrashChain, CRASH_KEEP_BLOCKS, CRASH_START_HEIGHT, FED_SCRIPT, type Fork } from './crash-chain.js';
import { fakeHash } from './scripted-chain.js';
import { TEST_DESCRIPTOR } from './tempdir.js';

export interface CrashRequest {
  i: number;
  status: 'accepted' | 'batched';
  txid?: string;
}

export interface CrashProposal {
  requests: number[];
  inputs: Outpoint[];
  state: 'live' | 'abandoned';
}

export function crashRequestId(i: number): { txHash: string; ordinal: number } {
  return { txHash: `0x${fakeHash('request', i)}`, ordinal: i % 7 };
}

async function main(): Promise<void> {
  const [dir, roundText, forksJson, lastHeightText] = process.argv.slice(2);
  if (dir === undefined || roundText === undefined || forksJson === undefined || lastHeightText === undefined)
    throw new Error('usage: crash-worker <dir> <round> <forks> <last height>');
  const round = Number(roundText);
  const chain = buildCrashChain(JSON.parse(forksJson) as Fork[], Number(lastHeightText));
  const store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
  const observer = new BitcoinObserver({
    store,
    chain,
    federationScript: FED_SCRIPT,
    startHeight: CRASH_START_HEIGHT,
    keepBlocks: CRASH_KEEP_BLOCKS,
  });

  // in-memory mirror, loaded from the store and updated only after each write succeeded
  const requests = new Map<number, CrashRequest>();
  for await (const [, request] of store.entries<CrashRequest>({ prefix: SPACES.request }))
    requests.set(request.i, request);
  const live = new Map<string, CrashProposal>();
  for await (const [key, proposal] of store.entries<CrashProposal>({ prefix: SPACES.proposal })) {
    if (proposal.state === 'live') live.set(key.slice(SPACES.proposal.length), proposal);
  }
  let proposals = 0;
  const say = (line: string) => process.stdout.write(`${line}\n`);

  const setStatus = (
    batch: ReturnType<Store['batch']>,
    request: CrashRequest,
    status: CrashRequest['status'],
    txid?: string,
  ): CrashRequest => {
    const next: CrashRequest = { i: request.i, status, ...(txid === undefined ? {} : { txid }) };
    const id = crashRequestId(request.i);
    batch.put(requestKey(id.txHash, id.ordinal), next);
    batch.del(requestIndexKey(request.status, id.txHash, id.ordinal));
    batch.put(requestIndexKey(status, id.txHash, id.ordinal), 1);
    return next;
  };

  for (let step = 0; ; step++) {
    const dice = Math.random();
    if (dice < 0.5) {
      const cursor = await observer.cursor();
      chain.tipLimit = (cursor?.height ?? CRASH_START_HEIGHT - 1) + 1;
      if (chain.tipLimit > chain.tip) continue;
      const { cursor: now } = await observer.sync();
      say(`B ${now?.height}`);
    } else if (dice < 0.7) {
      const i = requests.size;
      const request: CrashRequest = { i, status: 'accepted' };
      const id = crashRequestId(i);
      await store
        .batch()
        .put(requestKey(id.txHash, id.ordinal), request)
        .put(requestIndexKey('accepted', id.txHash, id.ordinal), 1)
        .write({ sync: true });
      requests.set(i, request);
      say(`R ${i}`);
    } else if (dice < 0.9) {
      const pending = [...requests.values()].filter((r) => r.status === 'accepted').slice(0, 3);
      if (pending.length === 0) continue;
      const txid = fakeHash('proposal', round, proposals++);
      const made = await store.exclusive(async () => {
        const inputs = (await listUnspent(store)).slice(0, 2).map(({ txid: t, vout }) => ({ txid: t, vout }));
        if (inputs.length === 0) return false;
        const batch = store.batch();
        await reserveUtxos(batch, inputs, txid);
        batch.put(proposalKey(txid), {
          requests: pending.map((r) => r.i),
          inputs,
          state: 'live',
        } satisfies CrashProposal);
        const updated = pending.map((r) => setStatus(batch, r, 'batched', txid));
        await batch.write({ sync: true });
        for (const r of updated) requests.set(r.i, r);
        live.set(txid, { requests: pending.map((r) => r.i), inputs, state: 'live' });
        return true;
      });
      if (made) say(`P ${txid}`);
    } else {
      const [txid, proposal] = [...live.entries()][Math.floor(Math.random() * live.size)] ?? [];
      if (txid === undefined || proposal === undefined) continue;
      await store.exclusive(async () => {
        const batch = store.batch();
        await releaseUtxos(batch, proposal.inputs, txid);
        batch.put(proposalKey(txid), { ...proposal, state: 'abandoned' } satisfies CrashProposal);
        const updated = proposal.requests.map((i) => setStatus(batch, requests.get(i) as CrashRequest, 'accepted'));
        await batch.write({ sync: true });
        for (const r of updated) requests.set(r.i, r);
        live.delete(txid);
      });
      say(`A ${txid}`);
    }
  }
}

// `node --test dist/test/` also runs every .js under a test/ folder, this one included, with no
// arguments: that load must do nothing.
if (process.argv.length > 2) {
  main().catch((err: unknown) => {
    process.stderr.write(`crash-worker: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
