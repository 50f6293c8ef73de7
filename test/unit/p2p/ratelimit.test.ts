import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenBucket } from '../../../src/p2p/ratelimit.js';

describe('token bucket', () => {
  it('takes while it holds enough, and refills at its rate up to its burst', () => {
    const clock = { now: 0 };
    const bucket = new TokenBucket(10, 20, () => clock.now);
    assert.equal(bucket.take(15), true);
    assert.equal(bucket.take(6), false, 'five left');
    clock.now = 1000;
    assert.equal(bucket.take(15), true, 'ten more after a second');
    clock.now = 60_000;
    assert.equal(bucket.take(21), false, 'never more than the burst saved up');
  });

  it('charges work found only once done: into debt, at most a burst, paid back at its rate', () => {
    const clock = { now: 0 };
    const bucket = new TokenBucket(10, 20, () => clock.now);
    bucket.charge(1_000);
    clock.now = 2_000;
    assert.equal(bucket.take(), false, 'the debt, bounded by the burst (−20), just paid back');
    clock.now = 2_100;
    assert.equal(bucket.take(), true);
  });
});
