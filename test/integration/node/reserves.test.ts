import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import type { ReserveReportJson } from '../../../src/cli/reserves.js';
import type { Devnet } from '../../../src/devnet/federation.js';
import { utxoKey } from '../../../src/storage/keys.js';
import { Store } from '../../../src/storage/store.js';
import { listUtxos } from '../../../src/wallet/utxos.js';
import { BITCOIND, NO_BITCOIND, scanScript } from '../../support/bitcoind.js';
import {
  checkExactlyOnce,
  federationOfProcesses,
  PEGOUT_SATS,
  regtest2of3,
  send,
  waitSigned,
} from '../../support/federation.js';
import { repoRoot } from '../../support/paths.js';

// The reserve audit (issue 13) on a funded regtest federation of member processes: each member's
// books match Bitcoin Core's UTXO set at every block through payments in the mempool, confirmed,
// reorganised away (invalidateblock) and back (reconsiderblock), and paid; then a UTXO value changed
// in one member's store raises reserves_mismatch, pauses that member, and it signs nothing more.

const FUNDED = 12n * 10_000_000n;

async function reservesOf(devnet: Devnet, i: number): Promise<ReserveReportJson> {
  const res = await fetch(`${devnet.members[i]!.apiUrl}/reserves`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return (await res.json()) as ReserveReportJson;
}

type Until = (r: ReserveReportJson) => boolean;

/**
 * Member i's report once it has audited Core's current tip (nothing is mined meanwhile) and `until`
 * holds: between blocks a member judges its books again every 30 s (node/reserves.ts RECHECK_MS).
 */
async function auditedAtTip(devnet: Devnet, i: number, until: Until = () => true): Promise<ReserveReportJson> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    const tip = await devnet.regtest!.rpc.getBlockchainInfo();
    const r = await reservesOf(devnet, i);
    if (r.core.compared && r.member?.hash === tip.bestblockhash && until(r)) return r;
    assert.ok(Date.now() < deadline, `member ${i + 1} did not audit block ${tip.blocks}: ${JSON.stringify(r)}`);
    await sleep(200);
  }
}

/** Every member audited Core's tip and found its books equal to Core's and covering what is owed. */
async function allMatch(devnet: Devnet, what: string, until?: Until): Promise<ReserveReportJson[]> {
  const scan = await scanScript(devnet.regtest!, devnet.federation.scriptPubKey);
  const reports = [];
  for (const i of [0, 1, 2]) {
    const r = await auditedAtTip(devnet, i, until);
    assert.equal(r.verdict, 'ok', `${what}: member ${i + 1}: ${JSON.stringify(r)}`);
    assert.equal(r.assets.sats, scan.total.toString(), `${what}: member ${i + 1} holds what Core holds`);
    assert.ok(r.core.compared && r.core.sats === scan.total.toString());
    reports.push(r);
  }
  return reports;
}

function pegout(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'pegout.js'), ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Stops member i, adds 1000 sats to one of its unspent outputs in its store, and starts it again. */
async function corruptOneOutput(devnet: Devnet, i: number): Promise<string> {
  await devnet.kill(i);
  const store = await Store.open(devnet.members[i]!.storeDir, { descriptor: devnet.federation.descriptor });
  let changed: string;
  try {
    const [u] = await listUtxos(store, 'unspent');
    assert.ok(u, 'the member holds an unspent output');
    await store
      .batch()
      .put(utxoKey(u.txid, u.vout), { ...u, value: u.value + 1000n })
      .write({ sync: true });
    changed = `${u.txid}:${u.vout}`;
  } finally {
    await store.close();
  }
  await devnet.start(i);
  return changed;
}

describe('reserve audit on regtest', { timeout: 900_000, skip: BITCOIND === undefined ? NO_BITCOIND : false }, () => {
  it('matches Core through payments and a reorg; an injected mismatch raises the alarm and pauses the member', async (ctx) => {
    const devnet = await federationOfProcesses(ctx, regtest2of3());
    const regtest = devnet.regtest!;
    const [funded] = await allMatch(devnet, 'funded');
    assert.equal(funded!.assets.sats, FUNDED.toString());
    assert.equal(funded!.ledger.pegIns, FUNDED.toString());
    assert.equal(funded!.liabilities.sats, '0');

    // in the mempool: the inputs are reserved (still assets), the requests owed
    const first = await send(devnet, 3);
    await waitSigned(devnet, 3, [0, 1, 2], 120_000, { status: 'broadcast' });
    const owed = (3n * PEGOUT_SATS).toString();
    for (const r of await allMatch(devnet, 'broadcast', (x) => x.liabilities.byStatus.broadcast?.sats === owed))
      assert.equal(r.assets.sats, FUNDED.toString());

    // confirmed once: the requests are settling, no longer liabilities
    const [block] = await regtest.mine(1);
    for (const r of await allMatch(devnet, 'one confirmation')) {
      assert.deepEqual(r.settling, { sats: (3n * PEGOUT_SATS).toString(), requests: 3 });
      assert.equal(r.liabilities.sats, '0');
    }
    // that block leaves the chain, then comes back
    await regtest.rpc.call('invalidateblock', [block]);
    for (const r of await allMatch(devnet, 'invalidated')) {
      assert.equal(r.liabilities.sats, owed);
      assert.equal(r.assets.sats, FUNDED.toString());
    }
    await regtest.rpc.call('reconsiderblock', [block]);
    for (const r of await allMatch(devnet, 'reconsidered')) assert.equal(r.settling.requests, 3);

    const second = await send(devnet, 2);
    const all = [...first.ids, ...second.ids];
    await waitSigned(devnet, all.length, [0, 1, 2], 300_000, { status: 'paid', between: () => regtest.mine(1) });
    for (const r of await allMatch(devnet, 'paid')) {
      assert.equal(r.liabilities.sats, '0');
      assert.equal(r.ledger.pegInsMinusPaid, (FUNDED - 5n * PEGOUT_SATS).toString());
      // only change remainders under the dust limit (330 sats for P2TR) may have gone to miners
      assert.ok(BigInt(r.ledger.unexplained) >= 0n && BigInt(r.ledger.unexplained) < 330n * 5n, r.ledger.unexplained);
    }
    const cli = pegout(['reserves', '--api', devnet.members[0]!.apiUrl]);
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /^verdict +ok: Bitcoin Core holds exactly this member's outputs at block \d+/m);

    // member 3's books no longer what Core holds: the alarm, the pause, and /health says so
    const changed = await corruptOneOutput(devnet, 2);
    const m3 = devnet.members[2]!;
    const faulty = await auditedAtTip(devnet, 2);
    assert.equal(faulty.verdict, 'faulty');
    assert.deepEqual(
      faulty.faults.map((f) => f.kind),
      ['reserves_mismatch'],
    );
    assert.ok(faulty.core.compared && faulty.core.listed.some((d) => `${d.txid}:${d.vout}` === changed));
    const alarms = (await readFile(m3.logFile, 'utf8'))
      .split('\n')
      .filter((l) => l.includes('"alarm":true'))
      .map((l) => JSON.parse(l) as { kind: string; pauses: boolean });
    assert.ok(
      alarms.some((a) => a.kind === 'reserves_mismatch' && a.pauses),
      'an alarm log line',
    );
    const res = await fetch(`${m3.apiUrl}/health`);
    const health = (await res.json()) as {
      status: string;
      components: { paused: { reasons: { kind: string }[] } | null; degraded: string[] };
    };
    assert.equal(res.status, 503);
    assert.equal(health.status, 'degraded');
    assert.equal(health.components.paused?.reasons[0]?.kind, 'reserves_mismatch');
    assert.ok(health.components.degraded.includes('paused'), JSON.stringify(health));
    assert.match(await (await fetch(`${m3.apiUrl}/metrics`)).text(), /^pegout_reserve_ok 0$/m);
    const cli3 = pegout(['reserves', '--api', m3.apiUrl]);
    assert.equal(cli3.status, 1);
    assert.match(cli3.stderr, /^pegout: reserves_mismatch: at block \d+ this member holds/);

    // paused, it signs nothing; the other two still pay
    const third = await send(devnet, 2);
    await waitSigned(devnet, all.length + 2, [0, 1], 300_000, { status: 'paid', between: () => regtest.mine(1) });
    const refused = /^pegout_signatures_rejected_total\{reason="proposal_paused"\} (\d+)$/m.exec(
      await (await fetch(`${m3.apiUrl}/metrics`)).text(),
    );
    const ownRefused = (await readFile(m3.logFile, 'utf8')).includes('"reason":"paused"');
    assert.ok((refused && Number(refused[1]) > 0) || ownRefused, 'member 3 refused to sign while paused');
    for (const i of [0, 1]) {
      const h = (await (await fetch(`${devnet.members[i]!.apiUrl}/health`)).json()) as { status: string };
      assert.equal(h.status, 'ok', `member ${i + 1} is healthy`);
    }
    await devnet.stop();
    await checkExactlyOnce(devnet, [...all, ...third.ids]);
  });
});
