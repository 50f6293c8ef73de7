import { createHash } from 'node:crypto';
import { describe, test, it } from 'node:test';
import assert from 'node:assert/strict';
import { EvmError } from '../../../src/evm/errors.js';
import { EvmObserver, wokenPollDelay, type EvmObserverOptions } from '../../../src/evm/observer.js';
import type { EvmRpc } from '../../../src/evm/rpc.js';
import { SPACES } from '../../../src/storage/keys.js';
import type { Store } from '../../../src/storage/store.js';
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
