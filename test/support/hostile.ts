import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestContext } from 'node:test';
import type { Devnet } from '../../src/devnet/federation.js';
import { PeerNetwork } from '../../src/p2p/network.js';
import { readKeyFile } from '../../src/signing/keyfile.js';
import { SigningPool } from '../../src/signing/pool.js';

// Malicious members for the Byzantine tests: each takes a killed member process's key, port and
// links, in the test's process, and sends whatever the test makes it send.

/** One hostile member: its key, its links to the honest members, and its signing pool. */
export interface Hostile {
  readonly key: string;
  readonly net: PeerNetwork;
  readonly pool: SigningPool;
}

/** Kills members `indices` and puts hostile members in their place, linked to every honest member. */
export async function startHostiles(ctx: TestContext, devnet: Devnet, indices: readonly number[]): Promise<Hostile[]> {
  for (const i of indices) await devnet.kill(i, 'SIGKILL');
  const honest = devnet.members.filter((m) => !indices.includes(m.index)).map((m) => m.key);
  const hostiles: Hostile[] = [];
  for (const i of indices) {
    const member = devnet.members[i]!;
    const secretKey = await readKeyFile(join(dirname(member.configFile), 'member.key'));
    const config = JSON.parse(await readFile(member.configFile, 'utf8')) as {
      p2p: { port: number; peers: Record<string, string> };
    };
    const net = new PeerNetwork({
      secretKey,
      members: devnet.federation.pubkeys,
      listen: { host: '127.0.0.1', port: config.p2p.port },
      peers: new Map(Object.entries(config.p2p.peers)),
      limits: { reconnectMinMs: 50, reconnectMaxMs: 300, misbehaviourLimit: 1_000_000 },
    });
    for (const type of ['proposal', 'signatures', 'finalized']) net.registerType(type, () => true);
    for (const type of ['turn', 'turn_done']) net.registerType(type, (b) => Number.isSafeInteger(b));
    const pool = new SigningPool(devnet.federation, { secretKey, size: 1 });
    await net.start();
    ctx.after(async () => {
      await net.stop();
      await pool.destroy();
    });
    hostiles.push({ key: member.key, net, pool });
  }
  const deadline = Date.now() + 20_000;
  for (const h of hostiles) {
    while (!honest.every((k) => h.net.connectedPeers().includes(k))) {
      assert.ok(Date.now() < deadline, 'a hostile member never linked to every honest member');
      await sleep(100);
    }
  }
  return hostiles;
}
