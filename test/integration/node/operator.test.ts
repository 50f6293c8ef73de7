import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { adminPaths, callAdmin, type AdminPaths } from '../../../src/api/admin.js';
import { decodeAddress } from '../../../src/bitcoin/address.js';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { serializeTx } from '../../../src/bitcoin/tx.js';
import type { DevnetMember } from '../../../src/devnet/federation.js';
import { sendPegouts } from '../../../src/devnet/requests.js';
import { EvmRpc } from '../../../src/evm/rpc.js';
import { BITCOIND, NO_BITCOIND, scanScript } from '../../support/bitcoind.js';
import { checkExactlyOnce, federationOfProcesses, send, waitSigned } from '../../support/federation.js';
import { repoRoot } from '../../support/paths.js';
import { statedPayees } from '../../support/spends.js';
import type { PegoutStatus } from '../../../src/api/status.js';

// Operator safety on member processes (issue 13): holds that need t operators, the pause and its
// federation-wide effect, the self-pause on an EVM reorg, and the admin interface's door.

const admin = (m: DevnetMember): AdminPaths => adminPaths(m.storeDir, { socket: null, tokenFile: null });

/** The member's view of request `id`; status 'unknown' before it ingested it. */
async function pegout(m: DevnetMember, id: string): Promise<PegoutStatus> {
  const res = await fetch(`${m.apiUrl}/pegouts/${encodeURIComponent(id)}`, { signal: AbortSignal.timeout(5000) });
  if (res.status === 404) return { status: 'unknown', payments: [] } as unknown as PegoutStatus;
  assert.equal(res.status, 200, `${m.apiUrl} on ${id}`);
  return (await res.json()) as PegoutStatus;
}

async function health(m: DevnetMember): Promise<{ ok: boolean; status: string; components: Record<string, unknown> }> {
  const res = await fetch(`${m.apiUrl}/health`, { signal: AbortSignal.timeout(5000) });
  return (await res.json()) as { ok: boolean; status: string; components: Record<string, unknown> };
}

/** Polls `check` until it holds (or fails the test after `ms`, with the last value seen). */
async function until<T>(what: string, look: () => Promise<T>, check: (v: T) => boolean, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await look();
    if (check(v)) return v;
    assert.ok(Date.now() < deadline, `${what}: not reached in time, last ${JSON.stringify(v)}`);
    await sleep(200);
  }
}

/** A raw call on the admin socket with the given authorization header: the HTTP status. */
function rawAdmin(socket: string, authorization?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath: socket, method: 'POST', path: '/pause', headers: authorization ? { authorization } : {} },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    req.end('{"reason":"x"}');
  });
}

describe('operator safety, member processes on loopback', () => {
  it('holds a request over the per-request limit until t operators released it, not t − 1', async (t) => {
    const devnet = await federationOfProcesses(t, {
      members: 3,
      threshold: 2,
      memberEnv: { PEGOUT_LIMITS_MAX_REQUEST_SATS: '2000000' },
    });
    const small = await send(devnet, 4);
    const big = (await sendPegouts(new EvmRpc(devnet.anvil.url), 1, 3_000_000n)).ids[0]!;
    await waitSigned(devnet, 4, [0, 1, 2]);
    const [m0, m1, m2] = devnet.members as [DevnetMember, DevnetMember, DevnetMember];
    for (const m of devnet.members) {
      const s = await until(
        `held on ${m.index}`,
        () => pegout(m, big),
        (s) => s.status === 'held',
      );
      assert.match(s.detail ?? '', /over the per-request limit of 2000000 sats: released by 0 of the 2/);
    }
    const listed = (await callAdmin(admin(m0), 'GET', '/holds')) as { id: string; releasedHere: boolean }[];
    assert.deepEqual(
      listed.map((h) => [h.id, h.releasedHere]),
      [[big, false]],
    );

    // one release of the two it needs: nothing may sign it, however long we wait
    await callAdmin(admin(m0), 'POST', `/holds/${encodeURIComponent(big)}/release`);
    await until(
      'm1 hears of the release',
      () => pegout(m1, big),
      (s) => /released by 1 of the 2/.test(s.detail ?? ''),
    );
    await sleep(3000);
    for (const m of devnet.members) assert.equal((await pegout(m, big)).status, 'held', `t − 1 releases on ${m.index}`);

    await callAdmin(admin(m1), 'POST', `/holds/${encodeURIComponent(big)}/release`);
    for (const m of devnet.members)
      await until(
        `paid after t releases on ${m.index}`,
        () => pegout(m, big),
        (s) => s.status === 'signed',
      );
    // member 2 never released it: a payment reached t without it, and it signed none of it
    const third = await pegout(m2, big);
    assert.ok(third.payments.every((p) => p.finalized));
    await devnet.stop();
    await checkExactlyOnce(devnet, [...small.ids, big]);
  });

  it('with n − t + 1 members paused nothing is paid; after resume everything is; the admin door needs the token', async (t) => {
    const devnet = await federationOfProcesses(t, { members: 3, threshold: 2 });
    const [m0, m1, m2] = devnet.members as [DevnetMember, DevnetMember, DevnetMember];

    // the door: no token, a wrong token, and the public API port
    assert.equal(await rawAdmin(admin(m0).socket), 401);
    assert.equal(await rawAdmin(admin(m0).socket, 'Bearer 00'), 401);
    const token = (await readFile(admin(m0).tokenFile, 'utf8')).trim();
    assert.equal(await rawAdmin(admin(m0).socket, `Bearer ${token.slice(0, -1)}x`), 401);
    for (const path of ['/pause', '/holds', '/resume', '/state']) {
      const res = await fetch(`${m0.apiUrl}${path}`, { method: 'POST', signal: AbortSignal.timeout(5000) });
      assert.ok(res.status === 404 || res.status === 405, `public API ${path}: ${res.status}`);
      const get = await fetch(`${m0.apiUrl}${path}`, { signal: AbortSignal.timeout(5000) });
      assert.equal(get.status, 404, `public API GET ${path}`);
    }

    for (const m of [m0, m1]) await callAdmin(admin(m), 'POST', '/pause', { reason: 'test: n − t + 1 paused' });
    const seen = await until(
      'member 2 knows two members are paused',
      () => health(m2),
      (h) => h.components.pausedMembers === 2,
    );
    assert.equal(seen.components.federationPaying, false);
    assert.equal(seen.status, 'degraded');
    const paused = await health(m0);
    assert.equal(paused.ok, false);
    assert.deepEqual((paused.components.paused as { reasons: { kind: string }[] }).reasons[0]?.kind, 'operator');

    const sent = await send(devnet, 6);
    await sleep(4000);
    for (const m of devnet.members) {
      for (const id of sent.ids) {
        const s = await pegout(m, id);
        assert.ok(!['signed', 'broadcast', 'paid'].includes(s.status), `${id} not paid on ${m.index}: ${s.status}`);
        if (m !== m2) assert.notEqual(s.status, 'batched', 'a paused member signs nothing');
      }
    }

    for (const m of [m0, m1]) await callAdmin(admin(m), 'POST', '/resume');
    await waitSigned(devnet, 6, [0, 1, 2]);
    assert.equal((await health(m2)).components.federationPaying, true);
    await devnet.stop();
    await checkExactlyOnce(devnet, sent.ids);
  });

  it('pauses itself, with an alarm, when a request it acted on is orphaned by an EVM reorg', async (t) => {
    const devnet = await federationOfProcesses(t, { members: 3, threshold: 2, evmConfirmations: 0 });
    const rpc = new EvmRpc(devnet.anvil.url);
    const snapshot = await rpc.call<string>('evm_snapshot');
    await send(devnet, 2);
    await waitSigned(devnet, 2, [0, 1, 2]);
    await rpc.call('evm_revert', [snapshot]);
    await rpc.call('anvil_mine', ['0x3']);
    for (const m of devnet.members) {
      const h = await until(
        `member ${m.index} paused`,
        () => health(m),
        (h) => h.components.paused !== null,
      );
      const reasons = (h.components.paused as { reasons: { kind: string }[] }).reasons;
      assert.ok(reasons.some((r) => r.kind === 'request_orphaned'));
      assert.ok((h.components.degraded as string[]).includes('alarm:request_orphaned'));
      const log = await readFile(m.logFile, 'utf8');
      const alarm = log
        .split('\n')
        .filter((l) => l.includes('"alarm":true'))
        .map((l) => JSON.parse(l) as { kind: string });
      assert.ok(
        alarm.some((a) => a.kind === 'request_orphaned'),
        `an alarm line in member ${m.index}'s log`,
      );
      const metrics = await (await fetch(`${m.apiUrl}/metrics`)).text();
      assert.match(metrics, /pegout_alarms_total\{kind="request_orphaned"\} [1-9]/);
    }
  });
});

describe('operator safety on regtest', { timeout: 600_000, skip: BITCOIND === undefined ? NO_BITCOIND : false }, () => {
  it('pauses every member, with an alarm, when t keys sign a spend outside the service (the offline ceremony)', async (ctx) => {
    const devnet = await federationOfProcesses(ctx, {
      members: 3,
      threshold: 2,
      bitcoind: BITCOIND!,
      paidConfirmations: 2,
      funding: { count: 4, sats: 10_000_000 },
    });
    const regtest = devnet.regtest!;
    const coin = (await scanScript(regtest, devnet.federation.scriptPubKey)).outputs[0]!;
    const value = coin.value;
    const to = decodeAddress(await regtest.rpc.call<string>('getnewaddress'), 'regtest').scriptPubKey;
    const unsigned = toHex(
      serializeTx({
        version: 2,
        locktime: 0,
        inputs: [{ txid: coin.txid, vout: coin.vout, sequence: 0xfffffffd, scriptSig: new Uint8Array(), witness: [] }],
        outputs: [{ value: value - 10_000n, scriptPubKey: to }],
      }),
    );
    const dir = path.dirname(devnet.members[0]!.configFile);
    const fedFile = path.join(dir, 'ceremony-federation.json');
    const prevoutsFile = path.join(dir, 'ceremony-prevouts.json');
    const pubkeys = devnet.federation.pubkeys.map(toHex);
    cli(['federation', '--threshold', '2', '--network', 'regtest', '--pubkey', ...pubkeys, '--out', fedFile]);
    await writeFile(
      prevoutsFile,
      JSON.stringify([{ value: Number(value), scriptPubKey: toHex(devnet.federation.scriptPubKey) }]),
    );
    const spend = ['--federation', fedFile, '--tx', unsigned, '--prevouts', prevoutsFile];
    const sigFiles = [];
    for (const m of devnet.members.slice(0, 2)) {
      const file = path.join(dir, `ceremony-sigs-${m.index}.json`);
      const key = path.join(path.dirname(m.configFile), 'member.key');
      await writeFile(file, cli(['sign', ...spend, '--key', key, ...statedPayees(unsigned, devnet.federation)]));
      sigFiles.push(file);
    }
    const signed = cli(['finalize', ...spend, '--signatures', ...sigFiles]).trim();
    await regtest.rpc.call('sendrawtransaction', [signed]);
    await regtest.mine(1);
    for (const m of devnet.members) {
      const h = await until(
        `member ${m.index} paused`,
        () => health(m),
        (h) => h.components.paused !== null,
      );
      const reasons = (h.components.paused as { reasons: { kind: string; detail: string }[] }).reasons;
      assert.ok(
        reasons.some((r) => r.kind === 'foreign_spend'),
        `member ${m.index} paused for the foreign spend: ${JSON.stringify(reasons)}`,
      );
    }
    // paused members sign nothing: a request now stays unpaid
    const sent = await send(devnet, 1);
    await sleep(4000);
    for (const m of devnet.members) {
      const s = await pegout(m, sent.ids[0]!);
      assert.ok(['unknown', 'accepted'].includes(s.status), `member ${m.index}: ${s.status}`);
    }
  });
});

/** Runs the pegout CLI; its stdout, or the test fails with its stderr. */
function cli(args: string[]): string {
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'pegout.js'), ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}
