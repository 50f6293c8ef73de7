import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { requestCounts, type Devnet } from '../../../src/devnet/federation.js';
import { EvmRpc } from '../../../src/evm/rpc.js';
import { generateSecretKey } from '../../../src/signing/keyfile.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { makeRotationPlan, rotationPlanFile } from '../../../src/wallet/handoff.js';
import { BITCOIND, NO_BITCOIND } from '../../support/bitcoind.js';
import {
  confirmedPayments,
  federationOfProcesses,
  memberStatus,
  regtest2of3,
  send,
  waitSigned,
} from '../../support/federation.js';
import { tempDir } from '../../support/tempdir.js';

// A membership change run by the service (issue 17): a 2-of-3 federation on regtest hands over
// to a 3-of-4 (member 3 replaced, two added; members 1 and 2 run in both) while requests keep
// arriving. Requests below the plan's EVM boundary are the old set's, the rest the new set's;
// the old set proves the new one signs with a test spend, then sweeps everything to it.

const xonly = (k: Uint8Array): Uint8Array => schnorrBackend().xonlyPublicKey(k);

async function oldAddressHolds(devnet: Devnet): Promise<number> {
  const scan = await devnet.regtest!.rpc.call<{ total_amount: number }>('scantxoutset', [
    'start',
    [`addr(${devnet.federation.address})`],
  ]);
  return Math.round(scan.total_amount * 1e8);
}

/** Mines a block at a time until `done`, or fails with `what` after `ms`. */
async function mineUntil(devnet: Devnet, done: () => Promise<boolean>, what: string, ms = 300_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    assert.ok(Date.now() < deadline, `${what} did not happen in time`);
    await devnet.regtest!.mine(1);
    await sleep(400);
  }
}

describe(
  'rotation on regtest, run by the members',
  { timeout: 900_000, skip: BITCOIND === undefined ? NO_BITCOIND : false },
  () => {
    it('2-of-3 → 3-of-4 while requests keep arriving: each paid once, by its set; old address swept and kept empty', async (ctx) => {
      const keys = Array.from({ length: 5 }, generateSecretKey);
      const old = await federationOfProcesses(ctx, { ...regtest2of3(), secretKeys: keys.slice(0, 3) });
      const regtest = old.regtest!;
      const evm = new EvmRpc(old.anvil.url);
      const before = await send(old, 3);
      await waitSigned(old, 3, [0, 1, 2], 300_000, { status: 'paid', between: () => regtest.mine(1) });

      // the plan: activation at the next block, and the EVM boundary just past what is final now
      const next = buildFederation({
        network: 'regtest',
        threshold: 3,
        pubkeys: [0, 1, 3, 4].map((i) => xonly(keys[i]!)),
      });
      const head = Number(await evm.call<string>('eth_blockNumber'));
      const plan = makeRotationPlan(
        old.federation,
        next,
        { activationHeight: (await regtest.rpc.getBlockCount()) + 1, evmBoundary: head + 1 },
        'test',
      );
      const planFile = join(await tempDir(ctx, 'rotation-plan'), 'plan.json');
      await writeFile(planFile, JSON.stringify(rotationPlanFile(plan)));
      // each old member loads it: a config change, a restart
      for (const [i, m] of old.members.entries()) {
        await old.kill(i);
        const config = JSON.parse(await readFile(m.configFile, 'utf8'));
        await writeFile(m.configFile, JSON.stringify({ ...config, rotation: { plan: planFile } }));
        await old.start(i);
      }
      const fresh = await federationOfProcesses(ctx, {
        ...regtest2of3(),
        members: 4,
        threshold: 3,
        secretKeys: [0, 1, 3, 4].map((i) => keys[i]!),
        chains: { anvil: old.anvil, regtest },
        rotationPlan: planFile,
      });
      assert.equal(fresh.federation.address, next.address);

      // requests after the boundary: the new set's, paid once the handoff funded it
      const during = await send(old, 3);
      await mineUntil(
        old,
        async () =>
          (await oldAddressHolds(old)) === 0 &&
          (await Promise.all(fresh.members.map((m) => requestCounts(m)))).every((c) => c.paid === 3),
        'the sweep of the old address and the new set paying the requests after the boundary',
      );
      const proven = (await (await fetch(`${old.members[0]!.apiUrl}/federation`)).json()) as {
        rotation: { proven: { txid: string } | null; side: string; fingerprint: string };
      };
      assert.equal(proven.rotation.side, 'from');
      assert.equal(proven.rotation.fingerprint, plan.fingerprint);
      assert.ok(proven.rotation.proven, 'the old set saw the new set spend the test output');

      // more requests, and a late peg-in to the old address: paid by the new set; swept
      const after = await send(old, 2);
      await regtest.rpc.call('sendtoaddress', [old.federation.address, 0.05]);
      await mineUntil(
        old,
        async () =>
          (await oldAddressHolds(old)) === 0 &&
          (await Promise.all(fresh.members.map((m) => requestCounts(m)))).every((c) => c.paid === 5),
        'the late peg-in swept and the later requests paid',
      );

      // each request paid on chain exactly once, by the set the boundary gives it; the other set never saw it
      for (const id of before.ids) {
        assert.equal(
          (await confirmedPayments(old, id)).length,
          1,
          `request ${id}: one confirmed payment by the old set`,
        );
        assert.equal((await fetch(`${fresh.members[0]!.apiUrl}/pegouts/${encodeURIComponent(id)}`)).status, 404);
      }
      for (const id of [...during.ids, ...after.ids]) {
        assert.equal(
          (await confirmedPayments(fresh, id)).length,
          1,
          `request ${id}: one confirmed payment by the new set`,
        );
        assert.equal((await fetch(`${old.members[0]!.apiUrl}/pegouts/${encodeURIComponent(id)}`)).status, 404);
        assert.equal((await memberStatus(fresh, id)).status, 'paid');
      }
      // no member paused itself or raised an alarm on the way (reserve audits included)
      for (const m of [...old.members, ...fresh.members]) {
        const health = (await (await fetch(`${m.apiUrl}/health`)).json()) as { status: string; components: unknown };
        assert.equal(health.status, 'ok', `${m.apiUrl}: ${JSON.stringify(health.components)}`);
      }
    });
  },
);
