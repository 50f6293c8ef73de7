import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { requestCounts } from '../../src/devnet/federation.js';
import { checkExactlyOnce, federationOfProcesses, send, waitSigned } from '../support/federation.js';

// Federations of real member processes (`pegout node`) on loopback, with a real anvil, real
// stores and SIGKILL. Without Bitcoin Core: funding is declared, payments end finalized.

describe('federation of member processes', { timeout: 600_000 }, () => {
  for (const [t, n] of [[2, 3], [3, 4]] as const) {
    it(`${t}-of-${n}: every request ends in exactly one finalized payment, known to every member`, async (ctx) => {
      const devnet = await federationOfProcesses(ctx, { members: n, threshold: t });
      const sent = await send(devnet, 12);
      await waitSigned(devnet, 12, devnet.members.map((m) => m.index));
      await devnet.stop();
      const payments = await checkExactlyOnce(devnet, sent.ids);
      assert.ok(payments.length >= 1);
    });
  }

  it('SIGKILL of random members (the proposer included) at random points, then restart: each request paid once, the restarted member catches up', async (ctx) => {
    const devnet = await federationOfProcesses(ctx, { members: 3, threshold: 2, maxOutputs: 4 });
    // a seeded choice of victims and moments, printed so a failure can be replayed by reading it
    let seed = 0x5eed;
    const random = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) % 1000) / 1000;
    const all = [];
    for (let wave = 0; wave < 3; wave++) {
      const victim = Math.floor(random() * 3);
      const delay = Math.floor(random() * 1500);
      const sending = send(devnet, 8);
      await sleep(delay);
      ctx.diagnostic(`wave ${wave}: SIGKILL member ${victim + 1} after ${delay} ms`);
      await devnet.kill(victim, 'SIGKILL');
      all.push(...(await sending).ids);
      await sleep(Math.floor(random() * 1000));
      await devnet.start(victim);
    }
    await waitSigned(devnet, all.length, [0, 1, 2], 180_000);
    await devnet.stop();
    await checkExactlyOnce(devnet, all);
  });

  it('with only t members up requests are paid; with fewer nothing is finalized, and payment resumes when enough return', async (ctx) => {
    const devnet = await federationOfProcesses(ctx, { members: 3, threshold: 2 });
    await devnet.kill(2, 'SIGKILL');
    const first = await send(devnet, 5);
    await waitSigned(devnet, 5, [0, 1]);

    await devnet.kill(1, 'SIGKILL');
    const second = await send(devnet, 5);
    await sleep(4000);
    const alone = await requestCounts(devnet.members[0]!);
    assert.equal(alone.signed ?? 0, 5, 'one member of a 2-of-3 federation finalizes nothing');

    await devnet.start(1);
    await devnet.start(2);
    await waitSigned(devnet, 10, [0, 1, 2]);
    await devnet.stop();
    await checkExactlyOnce(devnet, [...first.ids, ...second.ids]);
  });
});
