import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseTx } from '../../src/bitcoin/tx.js';
import { requestCounts, startDevnet, type Devnet, type DevnetOptions } from '../../src/devnet/federation.js';
import { sendPegouts, type SentRequests } from '../../src/devnet/requests.js';
import { EvmRpc } from '../../src/evm/rpc.js';
import type { FinalizedRecord } from '../../src/node/coordinator.js';
import { checkFinalizedWitnesses } from '../../src/signing/collector.js';
import { SPACES } from '../../src/storage/keys.js';
import { Store } from '../../src/storage/store.js';
import { tempDir } from './tempdir.js';

type Owner = { after(fn: () => Promise<void>): void };

export const PEGOUT_SATS = 1_500_000n;

/** A devnet of member processes in a temp dir, stopped when `owner` ends. */
export async function federationOfProcesses(owner: Owner, options: Omit<DevnetOptions, 'dir' | 'funding'> & { funding?: DevnetOptions['funding'] }): Promise<Devnet> {
  const dir = await tempDir(owner, 'federation');
  const devnet = await startDevnet({ dir, funding: { count: 40, sats: 10_000_000 }, slotMs: 400, ...options });
  owner.after(() => devnet.stop());
  return devnet;
}

export function send(devnet: Devnet, count: number): Promise<SentRequests> {
  return sendPegouts(new EvmRpc(devnet.anvil.url), count, PEGOUT_SATS);
}

/** Waits until each of `members` reports `count` requests signed (in a finalized payment). */
export async function waitSigned(devnet: Devnet, count: number, members: readonly number[], timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await Promise.all(members.map((i) => requestCounts(devnet.members[i]!).catch(() => ({}) as Record<string, number>)));
    if (counts.every((c) => (c.signed ?? 0) === count)) return;
    assert.ok(Date.now() < deadline, `not every request signed in time: ${JSON.stringify(counts)}`);
    await sleep(250);
  }
}

/**
 * After the members stopped: every finalized payment any member recorded, checked — every
 * request paid exactly once, no federation output spent by two payments, t valid signatures on
 * every input. Returns the payments.
 */
export async function checkExactlyOnce(devnet: Devnet, requestIds: readonly string[]): Promise<FinalizedRecord[]> {
  const finals = new Map<string, FinalizedRecord>();
  for (const m of devnet.members) {
    const store = await Store.open(m.storeDir, { descriptor: devnet.federation.descriptor });
    try {
      for await (const [, f] of store.entries<FinalizedRecord>({ prefix: SPACES.finalized })) finals.set(f.txid, f);
    } finally {
      await store.close();
    }
  }
  const paid = new Map<string, string>();
  const spent = new Map<string, string>();
  for (const f of finals.values()) {
    const tx = parseTx(f.tx);
    checkFinalizedWitnesses(tx, f.prevouts, devnet.federation);
    for (const id of f.requestIds) {
      assert.ok(!paid.has(id), `request ${id} paid by ${paid.get(id)} and ${f.txid}`);
      paid.set(id, f.txid);
    }
    for (const input of tx.inputs) {
      const name = `${input.txid}:${input.vout}`;
      assert.ok(!spent.has(name), `output ${name} spent by ${spent.get(name)} and ${f.txid}`);
      spent.set(name, f.txid);
    }
  }
  assert.deepEqual([...paid.keys()].sort(), [...requestIds].sort(), 'the finalized payments pay exactly the requests sent');
  return [...finals.values()];
}
