import { test } from 'node:test';
import assert from 'node:assert/strict';
import { wokenPollDelay } from '../../../src/evm/observer.js';

test('a woken poll waits only what is left of the gap since the last poll started', () => {
  // the last poll started long ago: a peer's proposal is followed up at once
  assert.equal(wokenPollDelay(1_000, 1_500), 0);
  assert.equal(wokenPollDelay(1_000, 1_050), 0);
  // polls still stay 50 ms apart, start to start, however often peers wake the observer
  assert.equal(wokenPollDelay(1_000, 1_010), 40);
  assert.equal(wokenPollDelay(1_000, 1_000), 50);
});
