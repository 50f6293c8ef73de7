import { createHash } from 'node:crypto';
import { describe, test, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { EvmError } from '../../../src/evm/errors.js';
import { EvmObserver, wokenPollDelay, type EvmObserverOptions } from '../../../src/evm/observer.js';
import { EvmRpc } from '../../../src/evm/rpc.js';
import { BRIDGE_ADDRESS, bridgeInterface, type RawLog } from '../../../src/evm/bridge.js';
import { listRequests } from '../../../src/evm/request-store.js';
import { SPACES } from '../../../src/storage/keys.js';
import type { Store } from '../../../src/storage/store.js';
import { evmNode } from '../../support/evm-node.js';
import { openTempStore } from '../../support/tempdir.js';

test('a woken poll waits only what is left of the gap since the last poll started', () => {
  // the last poll started long ago: a peer's proposal is followed up at once
  assert.equal(wokenPollDelay(1_000, 1_500), 0);
  assert.equal(wokenPollDelay(1_000, 1_050), 0);
  // polls still stay 50 ms apart, start to start, however often peers wake the observer
  assert.equal(wokenPollDelay(1_000, 1_010), 40);
  assert.equal(wokenPollDelay(1_000, 1_000), 50);
});

/**
 * A node of empty blocks up to `tip`, whose blocks from `forkAt` on can be swapped for another
 * branch's; `reads` counts the blocks asked for by number.
 */
class Chain {
  tip: number;
  forkAt = Infinity;
  reads = 0;
  constructor(tip: number) {
    this.tip = tip;
  }
  hash(n: number): string {
    return `0x${createHash('sha256')
      .update(`${n >= this.forkAt ? 'B' : 'A'}:${n}`)
      .digest('hex')}`;
  }
  readonly rpc = {
    call: async (method: string, params: unknown[]): Promise<unknown> => {
      if (method === 'eth_getLogs') return [];
      if (method !== 'eth_getBlockByNumber') throw new Error(`unexpected ${method}`);
      const tag = params[0] as string;
      if (tag !== 'latest' && tag !== 'finalized') this.reads++;
      const n = tag === 'latest' || tag === 'finalized' ? this.tip : Number.parseInt(tag, 16);
      return n > this.tip ? null : { number: `0x${n.toString(16)}`, hash: this.hash(n) };
    },
  } as unknown as EvmRpc;
}

describe('the EVM block records kept for rollbacks', () => {
  const observing = (store: Store, chain: Chain, options: Partial<EvmObserverOptions> = {}): EvmObserver =>
    new EvmObserver(store, chain.rpc, {
      network: 'regtest',
      finality: { confirmations: 0 },
      startBlock: 0,
      ...options,
    });
  const catchUp = async (observer: EvmObserver): Promise<void> => {
    for (let i = 0; i < 10_000; i++) if ((await observer.sync()).caughtUp) return;
  };
  const kept = async (store: Store): Promise<number[]> =>
    (await store.keys({ prefix: SPACES.evmBlock })).map((k) => Number(k.slice(SPACES.evmBlock.length)));

  it('follow any reorg shallower than keepBlocks, though a record is written only at the end of each range', async (t) => {
    const store = await openTempStore(t);
    // caught up in ranges of 1,000 blocks (the default): a record at 999, 1,999, … 29,999
    const chain = new Chain(29_999);
    const observer = observing(store, chain);
    await catchUp(observer);
    // the newest record at or below the last 10,000 blocks stays: the block a reorg of them forks from
    assert.deepEqual((await kept(store)).slice(0, 2), [19_999, 20_999]);
    chain.forkAt = 20_999;
    chain.tip = 30_500;
    await observer.sync();
    assert.equal((await observer.cursor())?.height, 19_999, 'rolled back to the newest block still on the chain');
  });

  it('follow a one-block reorg when keepBlocks is shorter than a range', async (t) => {
    const store = await openTempStore(t);
    const chain = new Chain(1_999);
    const observer = observing(store, chain, { keepBlocks: 3, maxRange: 1000 });
    await catchUp(observer);
    assert.deepEqual(await kept(store), [999, 1_999]);
    chain.forkAt = 1_999;
    await observer.sync();
    assert.equal((await observer.cursor())?.height, 999);
  });

  it('refuse a deeper reorg at once, from the oldest record kept, and raise the alarm', async (t) => {
    const store = await openTempStore(t);
    const chain = new Chain(300);
    const alarms: EvmError[] = [];
    const observer = observing(store, chain, {
      keepBlocks: 50,
      maxRange: 1,
      onReorgTooDeep: async (err) => void alarms.push(err),
    });
    await catchUp(observer);
    const before = await kept(store);
    assert.deepEqual([before[0], before.length], [250, 51]);
    chain.forkAt = 100;
    chain.reads = 0;
    await assert.rejects(
      observer.sync(),
      (err: unknown) => err instanceof EvmError && err.code === 'reorg_too_deep' && err.message.includes('block 250'),
    );
    assert.deepEqual(
      alarms.map((e) => e.code),
      ['reorg_too_deep'],
    );
    // the cursor's block, then the oldest record's: not every kept block, at every retry
    assert.equal(chain.reads, 2);
    assert.deepEqual(await kept(store), before, 'nothing undone');
    assert.equal((await observer.cursor())?.height, 300);
  });
});

const ADDRESS = 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080';
const hex = (n: number): string => `0x${n.toString(16)}`;
const hash = (...parts: (string | number)[]): string =>
  `0x${createHash('sha256').update(parts.join('|')).digest('hex')}`;

function requestLog(block: number, blockHash: string, tx: string, logIndex: number): RawLog {
  const encoded = bridgeInterface.encodeEventLog('RequestPegOut', [
    '0x1111111111111111111111111111111111111111',
    new TextEncoder().encode(ADDRESS),
    10n ** 16n, // 0.01 BTC
  ]);
  return {
    address: BRIDGE_ADDRESS.toLowerCase(),
    topics: encoded.topics,
    data: encoded.data,
    blockNumber: hex(block),
    blockHash,
    transactionHash: tx,
    logIndex: hex(logIndex),
    removed: false,
  };
}

/**
 * An observer of a node at `tip` with no logs, whose eth_getLogs over more than 50 blocks answers only
 * after a second (a range a user filled with cheap bridge calls), through a client that gives up after
 * `timeoutMs`; `slow()`: how many such calls it was sent.
 */
async function slowOnWideRanges(
  t: TestContext,
  tip: number,
  timeoutMs: number,
): Promise<{ observer: EvmObserver; slow: () => number }> {
  let slow = 0;
  const { url } = await evmNode(t, (body, res) => {
    const reply = (result: unknown): void => {
      if (res.destroyed) return;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ jsonrpc: '2.0', id: body.id, result }));
    };
    if (body.method === 'eth_getBlockByNumber') {
      const tag = body.params[0] as string;
      const n = tag === 'latest' || tag === 'finalized' ? tip : Number.parseInt(tag, 16);
      return reply(n > tip ? null : { number: hex(n), hash: hash('A', n) });
    }
    if (body.method === 'eth_getLogs') {
      const f = body.params[0] as { fromBlock: string; toBlock: string };
      const width = Number.parseInt(f.toBlock, 16) - Number.parseInt(f.fromBlock, 16) + 1;
      if (width > 50) {
        slow++;
        const timer = setTimeout(() => reply([]), 1_000);
        res.on('close', () => clearTimeout(timer));
        return;
      }
      return reply([]);
    }
    reply(null);
  });
  const observer = new EvmObserver(await openTempStore(t), new EvmRpc(url, { timeoutMs, retries: 0 }), {
    network: 'regtest',
    finality: { confirmations: 0 },
    startBlock: 0,
  });
  return { observer, slow: () => slow };
}

describe('the EVM observer against a chain that moves under it, and a slow node', () => {
  it('does not lose a request when the chain reorganises between eth_getLogs and the read of the range end', async (t) => {
    // 2 confirmations; the chain is reorganised from block 3 on (deeper than them) and the new
    // branch has a request in block 4. The reorg lands between eth_getLogs (answered from the old
    // branch: no logs) and the read of block `to`, whose new hash became the cursor: the range was
    // never read again, and this member lacked a request the others paid
    const store = await openTempStore(t);
    let branch: 'A' | 'B' = 'A';
    let switchAfterGetLogs = true;
    const blockHash = (n: number): string => hash(n >= 3 ? branch : 'A', n);
    const tx = hash('tx', 'user');
    const rpc = {
      call: async (method: string, params: unknown[]): Promise<unknown> => {
        const tip = 12;
        if (method === 'eth_getBlockByNumber') {
          const tag = params[0] as string;
          const n = tag === 'latest' || tag === 'finalized' ? tip : Number.parseInt(tag, 16);
          return n > tip ? null : { number: hex(n), hash: blockHash(n) };
        }
        if (method === 'eth_getLogs') {
          const f = params[0] as { fromBlock: string; toBlock: string };
          const [from, to] = [Number.parseInt(f.fromBlock, 16), Number.parseInt(f.toBlock, 16)];
          const logs = branch === 'B' && from <= 4 && 4 <= to ? [requestLog(4, blockHash(4), tx, 0)] : [];
          if (switchAfterGetLogs) {
            // the node switches branch right after answering
            branch = 'B';
            switchAfterGetLogs = false;
          }
          return logs;
        }
        throw new Error(`unexpected ${method}`);
      },
    } as unknown as EvmRpc;
    const observer = new EvmObserver(store, rpc, {
      network: 'regtest',
      finality: { confirmations: 2 },
      startBlock: 0,
    });
    for (let i = 0; i < 10; i++) {
      try {
        await observer.sync();
      } catch {
        // retried as run() would
      }
    }
    const requests = await listRequests(store);
    assert.deepEqual(
      requests.map((r) => r.id),
      [`${tx}:0`],
      'the request of block 4 on the branch the cursor now follows must be ingested',
    );
  });

  it('narrows the eth_getLogs range when the node times out on a large range, instead of stalling', async (t) => {
    // the node answers eth_getLogs over more than 50 blocks too slowly (a range a user filled with
    // cheap bridge calls, a slow node); smaller ranges answer at once. A timeout was retried on the
    // same range for good, at every member alike: peg-outs stopped
    const { observer } = await slowOnWideRanges(t, 2_000, 100);
    const errors: string[] = [];
    for (let i = 0; i < 20; i++) {
      try {
        await observer.sync();
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    const cursor = await observer.cursor();
    assert.ok(
      cursor !== undefined && cursor.height > 0,
      `ingestion stalled at the first range: cursor ${JSON.stringify(cursor)}, ${errors.length} failed syncs, e.g. ${errors[0]}`,
    );
  });

  // Found by review: after each answer the range doubled back to the width that had just timed out, so
  // while the load lasted every second eth_getLogs timed out; with the default client (4 retries of
  // 10 s, 3 s of backoff) that is 53 s lost for each 31 blocks read, fewer than 2-second blocks bring
  // in that time: ingestion, at every member alike, fell further behind for as long as the load lasted
  it('does not time out on every second eth_getLogs while the load that narrowed the range lasts', async (t) => {
    const tip = 2_000;
    const { observer, slow } = await slowOnWideRanges(t, tip, 50);
    for (let i = 0; i < 500; i++) {
      try {
        if ((await observer.sync()).caughtUp) break;
      } catch {
        // tried again, as run() does
      }
    }
    assert.equal((await observer.cursor())?.height, tip);
    // finding the width the node answers costs a few timeouts (1,000 → 500 → … → 31); after that a
    // wider range is tried now and then, not after every answer
    assert.ok(slow() <= 12, `${slow()} eth_getLogs calls timed out while ${tip} blocks were read`);
  });
});
