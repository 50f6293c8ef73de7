import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseTx } from '../../src/bitcoin/tx.js';
import { requestCounts, startDevnet, type Devnet, type DevnetOptions } from '../../src/devnet/federation.js';
import { sendPegouts, type SentRequests } from '../../src/devnet/requests.js';
import { EvmRpc } from '../../src/evm/rpc.js';
import { checkFinalizedWitnesses } from '../../src/signing/collector.js';
import { SPACES } from '../../src/storage/keys.js';
import { Store } from '../../src/storage/store.js';
import { listUtxos } from '../../src/wallet/utxos.js';
import { BITCOIND } from './bitcoind.js';
import { tempDir } from './tempdir.js';
import type { FinalizedRecord } from '../../src/storage/records.js';
import type { PegoutStatus } from '../../src/api/status.js';

type Owner = { after(fn: () => Promise<void>): void };

export const PEGOUT_SATS = 1_500_000n;

/** A devnet of member processes in a temp dir, stopped when `owner` ends. */
export async function federationOfProcesses(
  owner: Owner,
  options: Omit<DevnetOptions, 'dir' | 'funding'> & { funding?: DevnetOptions['funding'] },
): Promise<Devnet> {
  let devnet: Devnet | undefined;
  // after-hooks run in the order they were added: the members and Core stop before tempDir's hook
  // removes their directory (the other way round, a process still writing made the removal fail)
  owner.after(async () => devnet?.stop());
  const dir = await tempDir(owner, 'federation');
  devnet = await startDevnet({ dir, funding: { count: 40, sats: 10_000_000 }, slotMs: 400, ...options });
  return devnet;
}

/** 2-of-3 on regtest (needs BITCOIND): twelve peg-ins of 0.1 BTC, payments paid at two confirmations. */
export const regtest2of3 = () => ({
  members: 3,
  threshold: 2,
  bitcoind: BITCOIND!,
  paidConfirmations: 2,
  funding: { count: 12, sats: 10_000_000 },
});

export function send(devnet: Devnet, count: number): Promise<SentRequests> {
  return sendPegouts(new EvmRpc(devnet.anvil.url), count, PEGOUT_SATS);
}

/**
 * Waits until each of `members` reports `count` requests in `status` ('signed': in a finalized
 * payment; 'broadcast': Core has it; 'paid': confirmed at depth), running `between` after each look (regtest: mine).
 */
export async function waitSigned(
  devnet: Devnet,
  count: number,
  members: readonly number[],
  timeoutMs = 120_000,
  { status = 'signed', between }: { status?: 'signed' | 'broadcast' | 'paid'; between?: () => Promise<unknown> } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const counts = await Promise.all(
      members.map((i) => requestCounts(devnet.members[i]!).catch(() => ({}) as Record<string, number>)),
    );
    if (counts.every((c) => (c[status] ?? 0) === count)) return;
    assert.ok(Date.now() < deadline, `not every request ${status} in time: ${JSON.stringify(counts)}`);
    await between?.();
    await sleep(250);
  }
}

/**
 * Whether two of the transactions `finals` holds can never both confirm: they spend a common input,
 * or one spends an output of a third that spends an input of the other (it confirms only with that one).
 */
export function conflicts(finals: ReadonlyMap<string, FinalizedRecord>): (a: string, b: string) => boolean {
  const inputsOf = (txid: string): Set<string> =>
    new Set(parseTx(finals.get(txid)!.tx).inputs.map((i) => `${i.txid}:${i.vout}`));
  const shares = (a: Set<string>, b: Set<string>): boolean => [...a].some((o) => b.has(o));
  const descends = (a: string, b: string): boolean =>
    [...inputsOf(a)].some((o) => {
      const parent = o.split(':')[0]!;
      return parent !== b && finals.has(parent) && shares(inputsOf(parent), inputsOf(b));
    });
  return (a, b) => a === b || shares(inputsOf(a), inputsOf(b)) || descends(a, b) || descends(b, a);
}

/**
 * After the members stopped: every finalized payment any member recorded, checked — t valid
 * signatures on every input, every request sent is paid, and a request in two payments only
 * when they conflict (so it can be paid on chain exactly once). Returns the payments.
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
  // a request may be in several finalized payments only if they conflict pairwise: then at most
  // one of them can ever confirm
  const paid = new Map<string, FinalizedRecord[]>();
  for (const f of finals.values()) {
    checkFinalizedWitnesses(parseTx(f.tx), f.prevouts, devnet.federation);
    for (const id of [...f.requestIds, ...Object.keys(f.unmatched ?? {})])
      if (!paid.get(id)?.includes(f)) paid.set(id, [...(paid.get(id) ?? []), f]);
  }
  const conflict = conflicts(finals);
  for (const [id, payments] of paid) {
    for (const [i, a] of payments.entries()) {
      for (const b of payments.slice(i + 1)) {
        assert.ok(conflict(a.txid, b.txid), `request ${id} is paid by ${a.txid} and ${b.txid}, which do not conflict`);
      }
    }
  }
  assert.deepEqual(
    [...paid.keys()].sort(),
    [...requestIds].sort(),
    'the finalized payments pay exactly the requests sent',
  );
  return [...finals.values()];
}

/** After the members stopped: `members` hold no input reserved for a payment that lost or can never finish. */
export async function checkNothingReserved(devnet: Devnet, members: readonly number[]): Promise<void> {
  for (const i of members) {
    const store = await Store.open(devnet.members[i]!.storeDir, { descriptor: devnet.federation.descriptor });
    try {
      assert.deepEqual(
        await listUtxos(store, 'reserved'),
        [],
        `member ${i + 1} holds no input for a payment that cannot finish`,
      );
    } finally {
      await store.close();
    }
  }
}

/** Request `id` as member 0 reports it. */
export async function memberStatus(devnet: Devnet, id: string): Promise<PegoutStatus> {
  return (await (await fetch(`${devnet.members[0]!.apiUrl}/pegouts/${encodeURIComponent(id)}`)).json()) as PegoutStatus;
}

/** The finalized payments of request `id` that Bitcoin Core holds confirmed. */
export async function confirmedPayments(devnet: Devnet, id: string): Promise<string[]> {
  const confirmed = [];
  for (const p of (await memberStatus(devnet, id)).payments.filter((x) => x.finalized)) {
    // a payment that lost to a conflicting one was never relayed: Core does not know it
    const tx = await devnet
      .regtest!.rpc.call<{ confirmations?: number }>('getrawtransaction', [p.txid, true])
      .catch(() => ({ confirmations: 0 }));
    if ((tx.confirmations ?? 0) > 0) confirmed.push(p.txid);
  }
  return confirmed;
}
