import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkLimits,
  outflowWindow,
  scheduleOutflow,
  type OutflowLimits,
  type QueuedRequest,
} from '../../../src/wallet/limits.js';

const LIMITS: OutflowLimits = { maxRequestSats: 50n, windowSats: 100n, windowBlocks: 10 };

const queued = (sats: number, id = `r${sats}`, releases = 0): QueuedRequest => ({
  id,
  sats: BigInt(sats),
  released: releases > 0,
  releases,
});

describe('outflow limits', () => {
  it('numbers windows from height 0; without a chain there is one window', () => {
    assert.equal(outflowWindow(0, LIMITS), 0);
    assert.equal(outflowWindow(9, LIMITS), 0);
    assert.equal(outflowWindow(10, LIMITS), 1);
    assert.equal(outflowWindow(undefined, LIMITS), 0);
  });

  it('schedules first-come first-served: once one request waits, every later one waits behind it', () => {
    const plan = scheduleOutflow(
      [queued(40, 'a'), queued(40, 'b'), queued(30, 'c'), queued(10, 'd'), queued(50, 'e'), queued(45, 'f')],
      0n,
      3,
      LIMITS,
      2,
    );
    assert.deepEqual(plan.pay, ['a', 'b']);
    // c does not fit the 20 left; d would, but does not overtake c
    assert.deepEqual(
      [...plan.limited],
      [
        ['c', 4],
        ['d', 4],
        ['e', 4],
        ['f', 5],
      ],
    );
    assert.deepEqual(plan.held, []);
  });

  it('holds requests over the per-request limit until this operator and t in all released them', () => {
    const plan = scheduleOutflow(
      [queued(60, 'none'), queued(60, 'one', 1), { ...queued(60, 'peers'), releases: 2 }, queued(70, 'two', 2)],
      0n,
      0,
      LIMITS,
      2,
    );
    assert.deepEqual(plan.held, ['none', 'one', 'peers']);
    assert.deepEqual(plan.pay, ['two'], 'released by t, this member among them; exempt from the cap');
  });

  it('counts what the window already let leave', () => {
    const plan = scheduleOutflow([queued(30, 'a')], 80n, 0, LIMITS, 2);
    assert.deepEqual(plan.pay, []);
    assert.deepEqual([...plan.limited], [['a', 1]]);
    assert.deepEqual(scheduleOutflow([queued(20, 'a')], 80n, 0, LIMITS, 2).pay, ['a']);
  });

  it('checks a payment with the same rules the schedule follows', () => {
    const r = (sats: bigint, released = false, counts = true) => ({ id: `r${sats}`, sats, released, counts });
    assert.equal(checkLimits([r(40n), r(40n)], 20n, 0, LIMITS), undefined);
    assert.equal(checkLimits([r(40n), r(41n)], 20n, 0, LIMITS)?.reason, 'rate_limited');
    assert.equal(
      checkLimits([r(40n), r(41n, false, false)], 20n, 0, LIMITS),
      undefined,
      'in a payment in flight here: counted with it',
    );
    assert.equal(checkLimits([r(60n)], 0n, 0, LIMITS)?.reason, 'request_held');
    assert.equal(checkLimits([r(60n, true)], 100n, 0, LIMITS), undefined, 'released: exempt from the cap');
  });
});
