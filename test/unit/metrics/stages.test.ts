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

/** Keeps the CPU busy for `ms` of wall time. */
function spin(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until);
}

test('nested sections count each stage its own share, never twice', async () => {
  const delta = (stage: stages.Stage, from: stages.StageFigure) => ({
    cpu: (figure(stage).seconds - from.seconds) * 1000,
    wall: (figure(stage).wallSeconds - from.wallSeconds) * 1000,
    calls: figure(stage).calls - from.calls,
  });
  let before = { decide: figure('decide'), write: figure('store_write') };
  let cpu = stages.clockNs();
  stages.time('decide', () => {
    spin(20);
    stages.time('store_write', () => spin(30));
  });
  let spent = (stages.clockNs() - cpu) / 1e6;
  const decide = delta('decide', before.decide);
  let write = delta('store_write', before.write);
  // the outermost section's CPU, shared out by wall time: at least 20 ms to decide and 30 to store_write (a
  // preemption as a spin ends lengthens it), and each stage's CPU in proportion to its wall time, however long
  assert.ok(decide.wall >= 19.9 && write.wall >= 29.9, JSON.stringify({ decide, write }));
  assert.ok(Math.abs(decide.cpu + write.cpu - spent) < 0.5, `${decide.cpu} + ${write.cpu} ≠ ${spent}`);
  assert.ok(
    Math.abs(write.cpu / decide.cpu / (write.wall / decide.wall) - 1) < 1e-6,
    JSON.stringify({ decide, write }),
  );
  assert.deepEqual([decide.calls, write.calls], [1, 1]);

  // an async section whose awaits are already settled, with a section inside
  before = { decide: figure('proposal_build'), write: figure('store_write') };
  cpu = stages.clockNs();
  await stages.timeAsync('proposal_build', async () => {
    await Promise.resolve();
    spin(10);
    stages.time('store_write', () => spin(10));
  });
  spent = (stages.clockNs() - cpu) / 1e6;
  const build = delta('proposal_build', before.decide);
  write = delta('store_write', before.write);
  assert.ok(Math.abs(build.cpu + write.cpu - spent) < 0.5, `${build.cpu} + ${write.cpu} ≠ ${spent}`);
  assert.ok(build.wall >= 9.9 && write.wall >= 9.9, JSON.stringify({ build, write }));
  assert.ok(Math.abs(write.cpu / build.cpu / (write.wall / build.wall) - 1) < 1e-6, JSON.stringify({ build, write }));
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
  // size 1: one task hashes every input and signs them
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
