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
import { txid as txidOf } from '../../../src/bitcoin/tx.js';
import { buildTestSpend, makeRotationPlan, rotationPlanFile, type RotationPlan } from '../../../src/wallet/handoff.js';
import { proposalFromPayment } from '../../../src/wallet/proposal.js';
import { startHostiles } from '../../support/hostile.js';
import { BITCOIND, NO_BITCOIND, scanScript } from '../../support/bitcoind.js';
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

async function oldAddressHolds(devnet: Devnet): Promise<bigint> {
  return (await scanScript(devnet.regtest!, devnet.federation.scriptPubKey)).total;
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

type Owner = Parameters<typeof federationOfProcesses>[0];

interface Rotation {
  readonly old: Devnet;
  readonly fresh: Devnet;
  readonly fingerprint: string;
  readonly plan: RotationPlan;
  /** Requests sent before the plan, paid by the old set. */
  readonly before: readonly string[];
}

/**
 * A 2-of-3 that paid three requests, then a plan to 3-of-4 (activation at the next block, the EVM
 * boundary twenty blocks ahead) loaded by every old member (a config change and a restart),
 * and the new federation started beside it on the same chains. `otherPlanAt`: the old member that
 * loads a plan to another new set instead. Returns once the EVM chain reached the boundary.
 */
async function startRotation(
  ctx: Owner,
  o: { otherPlanAt?: number; members?: number; threshold?: number } = {},
): Promise<Rotation> {
  const n = o.members ?? 3;
  const keys = Array.from({ length: n + 3 }, generateSecretKey);
  const old = await federationOfProcesses(ctx, {
    ...regtest2of3(),
    members: n,
    threshold: o.threshold ?? 2,
    secretKeys: keys.slice(0, n),
  });
  const regtest = old.regtest!;
  const before = await send(old, 3);
  const everyone = old.members.map((m) => m.index);
  await waitSigned(old, 3, everyone, 300_000, { status: 'paid', between: () => regtest.mine(1) });

  const federationOf = (members: number[]) =>
    buildFederation({ network: 'regtest', threshold: 3, pubkeys: members.map((i) => xonly(keys[i]!)) });
  const evm = new EvmRpc(old.anvil.url);
  const head = async (): Promise<number> => Number(await evm.call<string>('eth_blockNumber'));
  // the boundary lies ahead of every old member's EVM cursor until all of them loaded the plan
  // (anvil mines a block a second; a member refuses a plan whose boundary it has read past)
  const points = { activationHeight: (await regtest.rpc.getBlockCount()) + 1, evmBoundary: (await head()) + 20 };
  const dir = await tempDir(ctx, 'rotation-plan');
  const planFile = async (name: string, members: number[]) => {
    const plan = makeRotationPlan(old.federation, federationOf(members), points, name);
    const file = join(dir, name);
    await writeFile(file, JSON.stringify(rotationPlanFile(plan)));
    return { plan, file };
  };
  // members 1 and 2 stay, the rest are replaced; two new members join
  const agreed = await planFile('plan.json', [0, 1, n, n + 1]);
  const other = await planFile('other-plan.json', [0, 1, n, n + 2]);
  for (const [i, m] of old.members.entries()) {
    await old.kill(i);
    const config = JSON.parse(await readFile(m.configFile, 'utf8'));
    const plan = i === o.otherPlanAt ? other.file : agreed.file;
    await writeFile(m.configFile, JSON.stringify({ ...config, rotation: { plan } }));
    await old.start(i);
  }
  const fresh = await federationOfProcesses(ctx, {
    ...regtest2of3(),
    members: 4,
    threshold: 3,
    secretKeys: [0, 1, n, n + 1].map((i) => keys[i]!),
    chains: { anvil: old.anvil, regtest },
    rotationPlan: agreed.file,
  });
  assert.equal(fresh.federation.address, agreed.plan.to.address);
  while ((await head()) < points.evmBoundary) await sleep(250);
  return { old, fresh, fingerprint: agreed.plan.fingerprint, plan: agreed.plan, before: before.ids };
}

const paidByNewSet = async (r: Rotation, count: number): Promise<boolean> =>
  (await Promise.all(r.fresh.members.map((m) => requestCounts(m)))).every((c) => c.paid === count);

interface RotationView {
  rotation: { proven: { txid: string } | null; side: string; fingerprint: string };
}

async function rotationAt(devnet: Devnet, i: number): Promise<RotationView['rotation']> {
  return ((await (await fetch(`${devnet.members[i]!.apiUrl}/federation`)).json()) as RotationView).rotation;
}

/** Each request paid on chain exactly once, by the set the boundary gives it; the other set never saw it. */
async function checkPaidOnceBySet(r: Rotation, after: readonly string[]): Promise<void> {
  for (const id of r.before) {
    assert.equal((await confirmedPayments(r.old, id)).length, 1, `request ${id}: one confirmed payment by the old set`);
    assert.equal((await fetch(`${r.fresh.members[0]!.apiUrl}/pegouts/${encodeURIComponent(id)}`)).status, 404);
  }
  for (const id of after) {
    assert.equal(
      (await confirmedPayments(r.fresh, id)).length,
      1,
      `request ${id}: one confirmed payment by the new set`,
    );
    assert.equal((await fetch(`${r.old.members[0]!.apiUrl}/pegouts/${encodeURIComponent(id)}`)).status, 404);
    assert.equal((await memberStatus(r.fresh, id)).status, 'paid');
  }
}

describe(
  'rotation on regtest, run by the members',
  { timeout: 900_000, skip: BITCOIND === undefined ? NO_BITCOIND : false },
  () => {
    it('2-of-3 → 3-of-4 while requests keep arriving: each paid once, by its set; old address swept and kept empty', async (ctx) => {
      const r = await startRotation(ctx);
      const { old } = r;
      // requests after the boundary: the new set's, paid once the handoff funded it
      const during = await send(old, 3);
      await mineUntil(
        old,
        async () => (await oldAddressHolds(old)) === 0n && (await paidByNewSet(r, 3)),
        'the sweep of the old address and the new set paying the requests after the boundary',
      );
      const rotation = await rotationAt(old, 0);
      assert.equal(rotation.side, 'from');
      assert.equal(rotation.fingerprint, r.fingerprint);
      assert.ok(rotation.proven, 'the old set saw the new set spend the test output');

      // more requests, and a late peg-in to the old address: paid by the new set; swept
      const after = await send(old, 2);
      await old.regtest!.rpc.call('sendtoaddress', [old.federation.address, 0.05]);
      await mineUntil(
        old,
        async () => (await oldAddressHolds(old)) === 0n && (await paidByNewSet(r, 5)),
        'the late peg-in swept and the later requests paid',
      );
      await checkPaidOnceBySet(r, [...during.ids, ...after.ids]);
      // no member paused itself or raised an alarm on the way (reserve audits included)
      for (const m of [...old.members, ...r.fresh.members]) {
        const health = (await (await fetch(`${m.apiUrl}/health`)).json()) as { status: string; components: unknown };
        assert.equal(health.status, 'ok', `${m.apiUrl}: ${JSON.stringify(health.components)}`);
      }
    });

    it('an old member with another plan refuses the sweeps; members of both sets SIGKILLed during them: the handoff completes after restart, nothing paid twice', async (ctx) => {
      const r = await startRotation(ctx, { otherPlanAt: 2 });
      const { old, fresh } = r;
      const during = await send(old, 3);
      await mineUntil(old, async () => (await rotationAt(old, 0)).proven !== null, 'the proof');
      // the sweeps go now: of the old set only member 2 signs them with member 1 (member 3 has
      // another plan), and a new member is down too
      await old.kill(1, 'SIGKILL');
      await fresh.kill(2, 'SIGKILL');
      for (let i = 0; i < 4; i++) {
        await old.regtest!.mine(1);
        await sleep(500);
      }
      await old.start(1);
      await fresh.start(2);
      await mineUntil(
        old,
        async () => (await oldAddressHolds(old)) === 0n && (await paidByNewSet(r, 3)),
        'the handoff after the restarts',
      );
      await checkPaidOnceBySet(r, during.ids);
      const refusals = (await readFile(old.members[2]!.logFile, 'utf8'))
        .split('\n')
        .filter((line) => line.includes('"proposal_refused"') && line.includes('unplanned_destination'));
      assert.ok(refusals.length > 0, 'the member with another plan refused the sweeps to an address it did not plan');
      assert.notEqual((await rotationAt(old, 2)).fingerprint, r.fingerprint);
    });

    it('3-of-4, f = 1: a member that sends its test spend to one honest member only does not stall the handoff (rivals merged)', async (ctx) => {
      const r = await startRotation(ctx, { members: 4, threshold: 3 });
      const { old } = r;
      const regtest = old.regtest!;
      const [hostile] = await startHostiles(ctx, old, [3]);
      const victim = old.members[0]!;
      // its test spend, of the largest output (an honest proposer takes the smallest that covers),
      // signed by itself and sent to the victim alone: with the victim's signature it has 2 of 3
      const coins = (await scanScript(regtest, old.federation.scriptPubKey)).outputs;
      const largest = [...coins].sort((a, b) => (a.value > b.value ? -1 : 1))[0]!;
      const coin = {
        txid: largest.txid,
        vout: largest.vout,
        value: largest.value,
        scriptPubKey: old.federation.scriptPubKey,
      };
      const test = buildTestSpend([coin], 100_000n, 2, r.plan)!;
      const proposal = proposalFromPayment(test, 0, hostile!.key);
      const txid = txidOf(test.tx);
      const signatures = await hostile!.pool.signTransaction(test.tx, proposal.prevouts);
      const flood = setInterval(() => {
        hostile!.net.send(victim.key, 'proposal', proposal);
        hostile!.net.send(victim.key, 'signatures', { txid, signatures });
      }, 50);
      ctx.after(() => clearInterval(flood));
      const during = await send(old, 3);
      await mineUntil(
        old,
        async () => (await oldAddressHolds(old)) === 0n && (await paidByNewSet(r, 3)),
        'the handoff with a partial test spend at one honest member',
      );
      clearInterval(flood);
      const logs = await Promise.all(old.members.slice(0, 3).map((m) => readFile(m.logFile, 'utf8')));
      const signedBy = logs.map((log) => log.split('\n').some((l) => l.includes('"signed"') && l.includes(txid)));
      const hostileTx = await regtest.rpc
        .call<{ confirmations?: number }>('getrawtransaction', [txid, true])
        .catch(() => ({ confirmations: 0 }));
      // the victim signed it: either the honest test spend went through a merge of the two, or the
      // victim sent the stalled test spend on to the members whose set never came (resendStalled) and
      // they completed it, a valid test spend of the test amount, signed by t members
      const completed = (hostileTx.confirmations ?? 0) > 0;
      ctx.diagnostic(
        !signedBy[0]
          ? 'an honest test spend reached the victim first: the partial one was refused'
          : completed
            ? 'the victim signed the partial test spend, sent it on when it stalled, and the others completed it'
            : 'the victim signed the partial test spend: the handoff went on through a merge',
      );
      if (signedBy[0])
        assert.ok(
          completed ? signedBy.filter(Boolean).length >= 2 : logs.some((log) => log.includes('"merging_handoff"')),
          'the victim signed the hostile test spend: merged, or completed by honest members',
        );
      else
        assert.equal(hostileTx.confirmations ?? 0, 0, 'refused by the victim, the partial test spend never confirmed');
      await checkPaidOnceBySet(r, during.ids);
    });
  },
);
