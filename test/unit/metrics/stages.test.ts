import assert from 'node:assert/strict';
import { test } from 'node:test';
import { fromHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import * as stages from '../../../src/metrics/stages.js';
import { SigningPool } from '../../../src/signing/pool.js';
import { federationSpend } from '../../support/spends.js';
import { federationVectors } from '../../support/vectors.js';

// The per-stage CPU counters: nested sections are counted once, to the innermost stage; the
// clock is the thread's CPU, so a thread blocked in a section is not charged for the wait; pool
// tasks bring back what they cost on their worker; /metrics exports all of it.

const figure = (stage: stages.Stage, thread: 'main' | 'worker' = 'main'): stages.StageFigure =>
  stages.stageFigures().find((f) => f.stage === stage && f.thread === thread)!;

/** Spins the CPU for about `ms` of this thread's CPU time. */
function spin(ms: number): void {
  const until = stages.clockNs() + ms * 1e6;
  while (stages.clockNs() < until);
}

test('nested sections count each stage its own time, never twice', async () => {
  const before = { decide: figure('decide'), write: figure('store_write'), build: figure('proposal_build') };
  stages.time('decide', () => {
    spin(20);
    stages.time('store_write', () => spin(30));
  });
  // an async section whose awaits are already settled, with a section inside
  await stages.timeAsync('proposal_build', async () => {
    await Promise.resolve();
    spin(10);
    stages.time('store_write', () => spin(10));
  });
  const ms = (stage: stages.Stage, from: stages.StageFigure): number => (figure(stage).seconds - from.seconds) * 1000;
  assert.ok(Math.abs(ms('decide', before.decide) - 20) < 5, `decide ${ms('decide', before.decide)} ms`);
  assert.ok(Math.abs(ms('store_write', before.write) - 40) < 5, `store_write ${ms('store_write', before.write)} ms`);
  assert.ok(Math.abs(ms('proposal_build', before.build) - 10) < 5, `build ${ms('proposal_build', before.build)} ms`);
  assert.equal(figure('store_write').calls - before.write.calls, 2);
  assert.equal(figure('decide').calls - before.decide.calls, 1);
  // an exception leaves the section closed
  assert.throws(() =>
    stages.time('verify', () => {
      throw new Error('refused');
    }),
  );
  const verify = figure('verify');
  spin(5);
  assert.equal(figure('verify').seconds, verify.seconds, 'nothing is charged once the section closed');
});

test('with the addon the clock is the thread CPU: a blocked section costs its wall time only', () => {
  if (stages.STAGE_CLOCK !== 'thread_cpu') return;
  const before = figure('finalize_record');
  const blocked = new Int32Array(new SharedArrayBuffer(4));
  stages.time('finalize_record', () => Atomics.wait(blocked, 0, 0, 50));
  const after = figure('finalize_record');
  assert.ok(after.seconds - before.seconds < 0.01, `CPU ${after.seconds - before.seconds} s`);
  assert.ok(after.wallSeconds - before.wallSeconds >= 0.045, `wall ${after.wallSeconds - before.wallSeconds} s`);
});

test('pool tasks bring back their worker CPU, and /metrics exports every stage', async (t) => {
  const v = federationVectors()[2]!;
  const federation = buildFederation({
    network: 'regtest',
    threshold: v.threshold,
    pubkeys: v.xonlyPubkeys.map((k) => fromHex(k)),
  });
  const pool = new SigningPool(federation, { secretKey: fromHex(v.secretKeys[0]!), size: 1 });
  t.after(() => pool.destroy());
  const { tx, prevouts } = federationSpend(federation, 200);
  const before = { sign: figure('sighash_sign', 'worker'), verify: figure('verify', 'worker') };
  const signatures = await pool.signTransaction(tx, prevouts);
  const pubkey = federation.pubkeys[0]!;
  await pool.verifyTransaction(tx, prevouts, pubkey, signatures);
  const sign = figure('sighash_sign', 'worker');
  assert.equal(sign.calls - before.sign.calls, 1);
  // 200 signatures take milliseconds at any speed, and less than the wall time they took there
  assert.ok(sign.seconds - before.sign.seconds > 0.001);
  assert.ok(sign.seconds - before.sign.seconds <= sign.wallSeconds - before.sign.wallSeconds + 1e-3);
  assert.equal(figure('verify', 'worker').calls - before.verify.calls, 1);
  assert.ok(figure('sighash_sign').calls > 0, 'the main thread part: the per-transaction hashes');

  const text = await createMetrics().registry.metrics();
  for (const stage of stages.STAGES) {
    for (const thread of ['main', 'worker'])
      assert.match(text, new RegExp(`^pegout_stage_cpu_seconds_total\\{stage="${stage}",thread="${thread}"\\} `, 'm'));
  }
  assert.match(text, /^pegout_stage_wall_seconds_total\{stage="verify",thread="worker"\} /m);
  assert.match(text, new RegExp(`^pegout_stage_clock_info\\{clock="${stages.STAGE_CLOCK}"\\} 1$`, 'm'));
  if (stages.STAGE_CLOCK === 'thread_cpu') assert.match(text, /^pegout_main_thread_cpu_seconds_total \d/m);
});
