import { Outflow } from '../../../src/node/outflow.js';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { parseTx, serializeTx } from '../../../src/bitcoin/tx.js';
import { freePorts } from '../../../src/evm/anvil.js';
import { parseRequestId } from '../../../src/evm/request-id.js';
import { listRequests, stageNewRequest } from '../../../src/evm/request-store.js';
import { Coordinator, COORDINATOR_CAPS } from '../../../src/node/coordinator.js';
import { proposerOf, turnHeldBy } from '../../../src/node/rotation.js';
import { recordFinalized } from '../../../src/node/finalize.js';
import { EARLY_CAPS } from '../../../src/node/early-signatures.js';
import { settleLocally } from '../../../src/node/settlement.js';
import { createLogger, PEER_LOG_LIMIT } from '../../../src/node/log.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import { PeerNetwork } from '../../../src/p2p/network.js';
import { checkFinalizedWitnesses } from '../../../src/signing/collector.js';
import { SigningPool } from '../../../src/signing/pool.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { cursorKey, finalizedKey, openPaymentKey, SPACES } from '../../../src/storage/keys.js';
import type { Store, StoreBatch } from '../../../src/storage/store.js';
import { buildPayments } from '../../../src/wallet/payment.js';
import { checkProposal, proposalFromPayment } from '../../../src/wallet/proposal.js';
import { TEST_POLICY } from '../../support/policy.js';
import { listUtxos, registerUtxo, unregisterUtxo } from '../../../src/wallet/utxos.js';
import { signProposal, type SigningPolicy } from '../../../src/node/signer.js';
import type { TestContext } from 'node:test';
type Metrics = ReturnType<typeof createMetrics>;
import type { Federation } from '../../../src/bitcoin/federation.js';
import { openTempStore } from '../../support/tempdir.js';
import { testRequest } from '../../support/requests.js';
import type { FinalizedRecord, UtxoRecord } from '../../../src/storage/records.js';

const hex32 = (n: number): string => n.toString(16).padStart(64, '0');

interface Member {
  readonly store: Store;
  readonly pool: SigningPool;
  readonly network: PeerNetwork;
  readonly coordinator: Coordinator;
  readonly metrics: Metrics;
}

/** A member whose key is in the federation but who runs no coordinator: its frames are whatever the test sends. */
interface Hostile {
  network: PeerNetwork;
  readonly pool: SigningPool;
  /** Drops its links and makes them again, with a network of its own key and port started anew. */
  relink(): Promise<PeerNetwork>;
}

const HOSTILE_TYPES = ['proposal', 'signatures', 'finalized', 'turn', 'turn_done'];

interface Setup {
  readonly members: number;
  readonly threshold: number;
  readonly requests: number;
  readonly utxos: readonly bigint[];
  /** Whether member i ingested request r (default: every member every request). */
  readonly ingests?: (i: number, r: number) => boolean;
  /** Runs on each member's store and pool before its coordinator starts. */
  readonly before?: (i: number, store: Store, pool: SigningPool, federation: Federation) => Promise<void>;
  /** Member i's way to look up federation outputs it does not know (Bitcoin Core's part in SPEC §2). */
  readonly recover?: (
    i: number,
    store: Store,
    federation: Federation,
  ) => ((o: { txid: string; vout: number }) => Promise<unknown>) | undefined;
  /** How many of the last members are hostile (links only, no coordinator). */
  readonly hostile?: number;
  readonly slotMs?: number;
  /** The members' signing rules, limits included (default TEST_POLICY). */
  readonly policy?: SigningPolicy;
  /** The coordinators' clock (default Date.now). */
  readonly now?: () => number;
}

const requestId = (r: number): string => `0x${hex32(1000 + r)}:0`;

/** Stages requests 0 … count − 1 that `ingested` selects, as a member's EVM observer would have ingested them. */
function stageRequests(batch: StoreBatch, count: number, ingested: (r: number) => boolean = () => true): void {
  for (let r = 0; r < count; r++) {
    if (!ingested(r)) continue;
    stageNewRequest(
      batch,
      testRequest({
        ...parseRequestId(requestId(r)),
        blockNumber: 10,
        evmAddress: `0x${'22'.repeat(20)}`,
        sats: BigInt(1_000_000 + r * 1000),
        scriptPubKey: witnessScript(0, new Uint8Array(20).fill(r + 1)),
      }),
      'then',
    );
  }
}

/**
 * n members in this process, each with its store, pool, links on loopback and coordinator, holding the same requests
 * and federation outputs.
 */
async function startMembers(
  t: TestContext,
  setup: Setup,
  lines: string[],
): Promise<{ federation: Federation; members: Member[]; hostile: Hostile[] }> {
  const secretKeys = Array.from({ length: setup.members }, (_, i) => Buffer.alloc(32, i + 41));
  const keys = secretKeys.map((k) => schnorrBackend().xonlyPublicKey(k));
  const federation = buildFederation({ network: 'regtest', threshold: setup.threshold, pubkeys: keys });
  const ports = await freePorts(keys.length);
  const honest = setup.members - (setup.hostile ?? 0);
  const network = (i: number): PeerNetwork => {
    const peers = new Map(
      keys.flatMap((k, j) => (j === i ? [] : [[toHex(k), `wss://127.0.0.1:${ports[j]}`] as [string, string]])),
    );
    return new PeerNetwork({
      secretKey: secretKeys[i]!,
      members: keys,
      listen: { host: '127.0.0.1', port: ports[i]! },
      peers,
      limits: { reconnectMinMs: 50, reconnectMaxMs: 300 },
    });
  };
  const hostile = secretKeys.slice(honest).map((secretKey, h): Hostile => {
    const self: Hostile = {
      network: network(honest + h),
      pool: new SigningPool(federation, { secretKey, size: 1 }),
      relink: async () => {
        await self.network.stop();
        self.network = network(honest + h);
        for (const type of HOSTILE_TYPES) self.network.registerType(type, () => true);
        await self.network.start();
        return self.network;
      },
    };
    return self;
  });
  const members = await Promise.all(
    secretKeys.slice(0, honest).map(async (secretKey, i) => {
      const store = await openTempStore(t, federation.descriptor);
      const batch = store.batch();
      stageRequests(batch, setup.requests, (r) => !setup.ingests || setup.ingests(i, r));
      for (const [u, value] of setup.utxos.entries())
        await registerUtxo(batch, {
          txid: hex32(500 + u),
          vout: 0,
          value,
          scriptPubKey: federation.scriptPubKey,
          height: 0,
          pegIn: true,
        });
      await batch.write({ sync: true });
      const pool = new SigningPool(federation, { secretKey, size: 1 });
      await setup.before?.(i, store, pool, federation);
      const links = network(i);
      const log = createLogger({ level: 'info', write: (l) => lines.push(l), bound: { member: i } });
      const metrics = createMetrics();
      const policy = setup.policy ?? TEST_POLICY;
      const coordinator = new Coordinator({
        store,
        federation,
        pool,
        network: links,
        policy: async () => policy,
        paidDepth: policy.paidDepth,
        outflow: new Outflow(store, links.key, federation.threshold, federation.pubkeys.map(toHex), policy.limits),
        paused: () => false,
        maxOutputs: 5,
        slotMs: setup.slotMs ?? 150,
        ...(setup.now ? { now: setup.now } : {}),
        log,
        metrics,
        onFinalized: (record) => settleLocally(store, federation, record),
        ...withRecovery(setup.recover?.(i, store, federation)),
      });
      return { store, pool, network: links, coordinator, metrics };
    }),
  );
  t.after(async () => {
    for (const m of members) {
      await m.coordinator.stop();
      await m.network.stop();
      await m.pool.destroy();
    }
    for (const h of hostile) {
      await h.network.stop();
      await h.pool.destroy();
    }
  });
  for (const h of hostile) {
    for (const type of HOSTILE_TYPES) h.network.registerType(type, () => true);
    await h.network.start();
  }
  for (const m of members) {
    await m.network.start();
    await m.coordinator.start();
  }
  return { federation, members, hostile };
}

/** Three honest members of a 3-of-4 and one hostile, holding four requests and four outputs of 0.05 BTC. */
const withOneHostile = (t: TestContext, lines: string[]) =>
  startMembers(
    t,
    { members: 4, threshold: 3, requests: 4, utxos: Array<bigint>(4).fill(5_000_000n), hostile: 1 },
    lines,
  );

const withRecovery = (recoverInput: ((o: { txid: string; vout: number }) => Promise<unknown>) | undefined) =>
  recoverInput ? { recoverInput } : {};

/** A counter's value for one label, from a member's own registry. */
async function counter(m: Member, name: string, reason: string): Promise<number> {
  const metric = (await m.metrics.registry.getMetricsAsJSON()).find((x) => x.name === name);
  return metric?.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

/**
 * Waits until every member has taken a frame from `sender` ('paused' false: a no-op). That `sender` counts a link up
 * is not enough: when both ends dialed, it can hold the link a member is about to close as a duplicate, and what is
 * sent on that one is lost (PeerNetwork.schedule). A member that took a frame kept that link, and `sender` only ever
 * moves to the link both ends keep.
 */
async function heardByAll(sender: PeerNetwork, members: readonly Member[]): Promise<void> {
  const heard = new Set<Member>();
  const listeners = members.map((m) => {
    const listener = (peer: string): void => void (peer === sender.key && heard.add(m));
    m.network.on('message', listener);
    return () => m.network.off('message', listener);
  });
  const deadline = Date.now() + 20_000;
  try {
    while (heard.size < members.length) {
      assert.ok(Date.now() < deadline, `${members.length - heard.size} members never took a frame from ${sender.key}`);
      sender.broadcast('paused', false);
      await sleep(20);
    }
  } finally {
    for (const off of listeners) off();
  }
}

async function waitAllSigned(members: readonly Member[], lines: readonly string[]): Promise<void> {
  const signedEverywhere = async (): Promise<boolean> => {
    for (const m of members) if ((await listRequests(m.store, (r) => r.status !== 'signed')).length > 0) return false;
    return true;
  };
  const deadline = Date.now() + 30_000;
  while (!(await signedEverywhere())) {
    assert.ok(Date.now() < deadline, `not all requests signed in time; logs:\n${lines.join('')}`);
    await sleep(100);
  }
}

/**
 * `count` finalized payments of 60 kB each, as a member without Bitcoin Core keeps them unpaid: what it
 * announces to a peer that links.
 */
async function stageUnpaidFinalized(store: Store, count: number): Promise<void> {
  const batch = store.batch();
  for (let k = 0; k < count; k++) {
    const txid = hex32(0xf1000 + k);
    batch.put(finalizedKey(txid), {
      txid,
      tx: new Uint8Array(60_000),
      prevouts: [],
      requestIds: [requestId(0)],
      unmatched: {},
      fee: 1000n,
      vsize: 100,
      conflicts: [],
      at: 'then',
    } satisfies FinalizedRecord);
    // as recordFinalized leaves it: a payment a restart takes up again
    batch.put(openPaymentKey(txid), 1);
  }
  await batch.write({ sync: true });
}

async function finals(store: Store): Promise<FinalizedRecord[]> {
  const out: FinalizedRecord[] = [];
  for await (const [, f] of store.entries<FinalizedRecord>({ prefix: SPACES.finalized })) out.push(f);
  return out;
}

describe('transaction coordinator, members in one process on loopback', () => {
  it('turns every request into exactly one finalized payment, signed by t members', async (t) => {
    const requestCount = 12;
    const lines: string[] = [];
    const { federation, members } = await startMembers(
      t,
      { members: 3, threshold: 2, requests: requestCount, utxos: Array<bigint>(6).fill(5_000_000n) },
      lines,
    );
    await waitAllSigned(members, lines);

    // every member holds the same finalized payments, each request paid exactly once
    const sets = await Promise.all(members.map((m) => finals(m.store)));
    const ids = sets.map((s) => s.map((f) => f.txid).sort());
    assert.deepEqual(ids[1], ids[0]);
    assert.deepEqual(ids[2], ids[0]);
    const paid = sets[0]!.flatMap((f) => f.requestIds);
    assert.equal(paid.length, requestCount);
    assert.equal(new Set(paid).size, requestCount, 'no request paid twice');
    const spent = new Set<string>();
    for (const f of sets[0]!) {
      const tx = parseTx(f.tx);
      for (const i of tx.inputs) {
        assert.ok(!spent.has(`${i.txid}:${i.vout}`), 'no output spent by two payments');
        spent.add(`${i.txid}:${i.vout}`);
      }
      assert.equal(tx.inputs[0]!.witness.filter((w) => w.length === 64).length, 2);
    }
    for (const f of sets[0]!) checkFinalizedWitnesses(parseTx(f.tx), f.prevouts, federation);
  });

  it('a member behind on the sidechain signs a proposal it could not check yet once it has ingested its requests', async (t) => {
    // 2-of-3 and only member 0 has the requests: members 1 and 2 cannot check its proposal and keep
    // it to try again (a request may be final at one member a moment before another), sending no
    // refusal. Member 1 then ingests them; its observer's wake-up tries the kept proposal at once.
    const lines: string[] = [];
    const { members } = await startMembers(
      t,
      { members: 3, threshold: 2, requests: 3, utxos: [5_000_000n], slotMs: 2000, ingests: (i) => i === 0 },
      lines,
    );
    const [proposer, behind] = [members[0]!, members[1]!];
    const deadline = Date.now() + 20_000;
    while (behind.coordinator.held().retry === 0) {
      assert.ok(Date.now() < deadline, `member 1 never kept a proposal to retry; logs:\n${lines.join('')}`);
      await sleep(20);
    }
    assert.equal((await finals(proposer.store)).length, 0, 'no payment without a second signer');
    const batch = behind.store.batch();
    stageRequests(batch, 3);
    await batch.write({ sync: true });
    behind.coordinator.ingested();
    await waitAllSigned([proposer, behind], lines);
    const events = lines.map((l) => JSON.parse(l) as { event: string; member: number; txid?: string });
    const proposed = events.filter((e) => e.event === 'proposed' && e.member === 0).map((e) => e.txid);
    const signed = events.filter((e) => e.event === 'signed' && e.member === 1).map((e) => e.txid);
    assert.deepEqual(signed, proposed.slice(0, 1), 'member 1 signed the proposal it kept, the first one');
    assert.equal(await counter(behind, 'pegout_signatures_rejected_total', 'proposal_unknown_request'), 0);
    assert.equal((await finals(proposer.store)).length, 1);
  });

  it("a member's proposals kept to retry are bounded per member: a flood of them leaves room for an honest one", async (t) => {
    // 3-of-4, member 4 hostile. Nobody has ingested anything yet; the attacker sends each member more
    // proposals of requests nobody knows than all members together may have kept, each a new txid and
    // some sent twice. Then member 0 ingests three requests and proposes; members 1 and 2 keep its
    // proposal to retry and sign it once they have ingested them.
    const lines: string[] = [];
    const setup = {
      members: 4,
      threshold: 3,
      requests: 3,
      utxos: [5_000_000n],
      hostile: 1,
      slotMs: 1000,
      ingests: () => false,
    };
    const { federation, members, hostile } = await startMembers(t, setup, lines);
    const attacker = hostile[0]!.network;
    const funding = [{ txid: hex32(500), vout: 0, value: 5_000_000n, scriptPubKey: federation.scriptPubKey }];
    const flood = COORDINATOR_CAPS.retry + 100;
    for (let k = 0; k < flood; k++) {
      const unknown = {
        id: `0x${hex32(80_000 + k)}:0`,
        scriptPubKey: witnessScript(0, new Uint8Array(20).fill(9)),
        sats: 1_000_000n,
      };
      const [payment] = buildPayments([unknown], funding, 2, federation, { maxOutputs: 5 }).payments;
      const proposal = proposalFromPayment(payment!, 0, attacker.key);
      attacker.broadcast('proposal', proposal);
      if (k % 10 === 0) attacker.broadcast('proposal', proposal);
      // within the attacker's frame budget: a flood the links drop proves nothing here
      if (k % 50 === 49) await sleep(150);
    }
    const [first, ...others] = members;
    const deadline = Date.now() + 30_000;
    while (others.some((m) => m.coordinator.held().retry < COORDINATOR_CAPS.retryPerPeer)) {
      assert.ok(Date.now() < deadline, `the flood was not kept: ${others.map((m) => m.coordinator.held().retry)}`);
      await sleep(50);
    }
    await sleep(500);
    for (const m of others)
      assert.ok(m.coordinator.held().retry <= COORDINATOR_CAPS.retryPerPeer, `${m.coordinator.held().retry} kept`);
    const batch = first!.store.batch();
    stageRequests(batch, 3);
    await batch.write({ sync: true });
    first!.coordinator.ingested();
    // member 0 proposes in its slot; members 1 and 2 keep its proposal
    while (!lines.some((l) => l.includes('"event":"proposed"'))) {
      assert.ok(Date.now() < deadline + 10_000, `member 0 never proposed; logs:\n${lines.join('')}`);
      await sleep(50);
    }
    await sleep(300);
    for (const m of others) {
      const later = m.store.batch();
      stageRequests(later, 3);
      await later.write({ sync: true });
      m.coordinator.ingested();
    }
    await waitAllSigned(members, lines);
  });

  it("a peer's proposals of real requests are checked within a work budget of its own", async (t) => {
    // 3-of-4, member 4 hostile. Every member holds 990 requests. The attacker sends 250 proposals that
    // pay them all from one output, each at a higher fee (a new txid), within its frame budget: each
    // costs a member the read and check of 990 requests and, a valid replacement of the one before,
    // its signature; nothing bounded them but the links' 16 MiB a second. The members' clock stands
    // still (in member 0's slot, an honest proposer's), so the budget does not refill meanwhile.
    const lines: string[] = [];
    const slotMs = 1000;
    const keys = [0, 1, 2, 3].map((i) => toHex(schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i + 41))));
    const frozen = [...keys].sort().indexOf(keys[0]!) * slotMs;
    const setup = {
      members: 4,
      threshold: 3,
      requests: 990,
      utxos: [2_000_000_000n],
      hostile: 1,
      slotMs,
      now: () => frozen,
    };
    const { federation, members, hostile } = await startMembers(t, setup, lines);
    assert.equal(proposerOf(frozen / slotMs, federation.pubkeys), keys[0]);
    const attacker = hostile[0]!.network;
    await heardByAll(attacker, members);
    const requests = Array.from({ length: setup.requests }, (_, r) => ({
      id: requestId(r),
      scriptPubKey: witnessScript(0, new Uint8Array(20).fill(r + 1)),
      sats: BigInt(1_000_000 + r * 1000),
    }));
    const funding = [{ txid: hex32(500), vout: 0, value: 2_000_000_000n, scriptPubKey: federation.scriptPubKey }];
    const flood = 250;
    const proposals = Array.from({ length: flood }, (_, k) => {
      const [payment] = buildPayments(requests, funding, 2 + k * 0.01, federation, { maxOutputs: 1000 }).payments;
      return proposalFromPayment(payment!, 0, attacker.key);
    });
    for (const proposal of proposals) attacker.broadcast('proposal', proposal);
    const checked = Math.floor(COORDINATOR_CAPS.proposalWork.burst / (setup.requests + 1)) + 1;
    for (const m of members) {
      const deadline = Date.now() + 60_000;
      const dropped = async (): Promise<number> => counter(m, 'pegout_frames_dropped_total', 'proposal_budget');
      while ((await dropped()) < flood - checked) {
        assert.ok(
          Date.now() < deadline,
          `${await dropped()} of ${flood} proposals dropped; at most ${checked} checked`,
        );
        await sleep(100);
      }
    }
    t.diagnostic(`each member checked at most ${checked} of ${flood}`);
  });

  it("the first member to sign another's payment, which cannot finalize it by itself yet, takes it from an announcement", async (t) => {
    // 3-of-4: the first to sign holds its set and the proposer's, two of three; a quarter slot (1 s) is
    // far more than the others need to finalize on loopback. Members share this process, so the
    // order of the log lines is the order of the events.
    const lines: string[] = [];
    const { members } = await startMembers(
      t,
      { members: 4, threshold: 3, requests: 8, utxos: Array<bigint>(8).fill(5_000_000n), slotMs: 4000 },
      lines,
    );
    await waitAllSigned(members, lines);
    const events = lines.map((l) => JSON.parse(l) as { event: string; member: number; txid?: string; from?: string });
    const proposed = events.filter((e) => e.event === 'proposed');
    assert.ok(proposed.length > 0);
    for (const { txid } of proposed) {
      const first = events.find((e) => e.event === 'signed' && e.txid === txid)!;
      const finalized = events.find((e) => e.event === 'finalized' && e.txid === txid && e.member === first.member)!;
      assert.notEqual(finalized.from, 'self', `member ${first.member} collected ${txid} itself`);
    }
  });

  it('collects a payment itself once a quarter slot passed without its proposer announcing it finalized', async (t) => {
    // 3-of-4, member 3 hostile, member 2 without the requests (it proposes and signs nothing). The
    // hostile proposal and signatures reach member 0 alone: it signs holding its set and the
    // proposer's, two of three, so it waits for the proposer. Then the proposal alone reaches member
    // 1, which signs and sends member 0 the third set, but holds two itself. The proposer never
    // announces the payment: member 0 finalizes it a quarter slot (2 s) later, and member 1 takes it
    // from member 0.
    const lines: string[] = [];
    const { federation, members, hostile } = await startMembers(
      t,
      {
        members: 4,
        threshold: 3,
        requests: 3,
        utxos: [5_000_000n],
        hostile: 1,
        slotMs: 8000,
        ingests: (i) => i !== 2,
      },
      lines,
    );
    const attacker = hostile[0]!;
    const requests = [0, 1, 2].map((r) => ({
      id: requestId(r),
      scriptPubKey: witnessScript(0, new Uint8Array(20).fill(r + 1)),
      sats: BigInt(1_000_000 + r * 1000),
    }));
    const spendable = await listUtxos(members[0]!.store, 'unspent');
    const [payment] = buildPayments(requests, spendable, 2, federation, { maxOutputs: 5 }).payments;
    const proposal = proposalFromPayment(payment!, 0, attacker.network.key);
    const { tx, txid } = checkProposal(proposal);
    const signatures = await attacker.pool.signTransaction(tx, proposal.prevouts);
    const events = () =>
      lines.map((l) => JSON.parse(l) as { event: string; member: number; txid?: string; from?: string });
    const signedBy = (i: number): boolean =>
      events().some((e) => e.event === 'signed' && e.txid === txid && e.member === i);
    const deadline = Date.now() + 20_000;
    await heardByAll(attacker.network, members);
    for (const i of [0, 1]) {
      while (!signedBy(i)) {
        assert.ok(Date.now() < deadline, `member ${i} did not sign; logs:\n${lines.join('')}`);
        attacker.network.send(members[i]!.network.key, 'proposal', proposal);
        if (i === 0) attacker.network.send(members[0]!.network.key, 'signatures', { txid, signatures });
        await sleep(100);
      }
    }
    const finalized = () => events().filter((e) => e.event === 'finalized' && e.txid === txid && e.member < 2);
    while (finalized().length < 2) {
      assert.ok(Date.now() < deadline, `not finalized in time; logs:\n${lines.join('')}`);
      await sleep(100);
    }
    assert.deepEqual(
      finalized()
        .map((e) => [e.member, e.from])
        .sort(),
      [
        [0, 'self'],
        [1, members[0]!.network.key],
      ],
    );
  });

  it('pays a burst above the rolling cap across windows, first come first served, and says which window each waits for', async (t) => {
    // requests r are for 1,000,000 + 1000·r sats; a window of 10 blocks lets 3,100,000 leave:
    // r0–r2 now (window 10), r3–r5 in window 11, r6 in window 12
    const limits = { maxRequestSats: 2_000_000n, windowSats: 3_100_000n, windowBlocks: 10 };
    const lines: string[] = [];
    const tip = (height: number) => (store: Store) =>
      store
        .batch()
        .put(cursorKey('bitcoin'), { height, hash: hex32(height) })
        .write({ sync: true });
    const { members } = await startMembers(
      t,
      {
        members: 3,
        threshold: 2,
        requests: 7,
        utxos: Array<bigint>(8).fill(5_000_000n),
        policy: { ...TEST_POLICY, limits },
        before: (_i, store) => tip(100)(store),
      },
      lines,
    );
    const statuses = async (m: Member) =>
      Object.fromEntries((await listRequests(m.store)).map((r) => [r.id, `${r.status} ${r.detail ?? ''}`]));
    const settle = async (paid: number, waiting: Record<number, number>): Promise<void> => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        const views = await Promise.all(members.map(statuses));
        const ok = views.every((v) =>
          Array.from({ length: 7 }, (_, r) => r).every((r) => {
            const s = v[requestId(r)]!;
            return r < paid
              ? s.startsWith('signed')
              : s.startsWith(`rate_limited waits for the rolling cap: window ${waiting[r]} `);
          }),
        );
        if (ok) return;
        assert.ok(Date.now() < deadline, `statuses not reached in time: ${JSON.stringify(views, null, 1)}`);
        await sleep(100);
      }
    };
    await settle(3, { 3: 11, 4: 11, 5: 11, 6: 12 });
    for (const m of members) await tip(110)(m.store);
    await settle(6, { 6: 12 });
    for (const m of members) await tip(120)(m.store);
    await settle(7, {});
    // each window's payments pay exactly its requests, in arrival order
    const byTime = (await finals(members[0]!.store)).sort((a, b) => a.at.localeCompare(b.at));
    assert.deepEqual(
      byTime.map((f) => [...f.requestIds].sort()),
      [[0, 1, 2], [3, 4, 5], [6]].map((rs) => rs.map(requestId)),
    );
  });

  it('unblocks rival payments of the same requests whose signers split, and frees every input the losers held', async (t) => {
    // 3-of-4: members 0 and 1 signed one payment, members 2 and 3 another from other inputs;
    // each refuses the other's (they do not conflict), so neither can reach three signatures
    const lines: string[] = [];
    const requests = [0, 1, 2, 3].map((r) => ({
      id: requestId(r),
      scriptPubKey: witnessScript(0, new Uint8Array(20).fill(r + 1)),
      sats: BigInt(1_000_000 + r * 1000),
    }));
    const rivalOf: string[] = [];
    const { members } = await startMembers(
      t,
      {
        members: 4,
        threshold: 3,
        requests: 4,
        utxos: Array<bigint>(6).fill(2_500_000n),
        before: async (i, store, pool, federation) => {
          const spendable = (await listUtxos(store, 'unspent')).slice(i < 2 ? 0 : 2, i < 2 ? 2 : 4);
          const [payment] = buildPayments(requests, spendable, 2, federation, { maxOutputs: 6 }).payments;
          const proposal = proposalFromPayment(payment!, 0, toHex(federation.pubkeys[i]!));
          const outcome = await signProposal(
            store,
            pool,
            federation,
            checkProposal(proposal),
            TEST_POLICY,
            proposal.proposer,
          );
          assert.ok(outcome.ok, JSON.stringify(outcome));
          assert.equal(payment!.prevouts.length, 2);
          if (outcome.ok) rivalOf[i] = outcome.txid;
        },
      },
      lines,
    );
    assert.equal(new Set(rivalOf).size, 2);
    await waitAllSigned(members, lines);
    assert.ok(
      lines.some((l) => l.includes('"merging"')),
      'a proposer merged the rivals',
    );

    for (const [i, m] of members.entries()) {
      const [final, ...others] = await finals(m.store);
      assert.equal(others.length, 0, 'one finalized payment');
      assert.deepEqual([...final!.requestIds].sort(), requests.map((r) => r.id).sort());
      assert.deepEqual(final!.conflicts, [rivalOf[i]], 'the rival this member signed loses to it');
      assert.deepEqual(
        await listUtxos(m.store, 'reserved'),
        [] as UtxoRecord[],
        'no input stays reserved by a losing payment',
      );
      assert.equal((await listUtxos(m.store, 'spent')).length, parseTx(final!.tx).inputs.length);
    }
  });

  it('a member that claims the turn out of its slot, again and again, costs at most its own slot and grace per round', async (t) => {
    // 3-of-4 with member 4 hostile: every 25 ms it announces a turn and sends a proposal, in every slot
    const slotMs = 150;
    const setup = {
      members: 4,
      threshold: 3,
      requests: 12,
      utxos: Array<bigint>(8).fill(5_000_000n),
      hostile: 1,
      slotMs,
    };
    const lines: string[] = [];
    const started = Date.now();
    const { members, hostile } = await startMembers(t, setup, lines);
    const attacker = hostile[0]!.network;
    let slot = 0;
    const spam = setInterval(() => {
      slot = Math.floor(Date.now() / slotMs);
      attacker.broadcast('turn', slot);
      attacker.broadcast('proposal', {
        version: 1,
        round: slot,
        proposer: attacker.key,
        unsignedTx: Uint8Array.of(2, 0, 0, 0),
        prevouts: [],
        requestIds: [],
      });
    }, 25);
    t.after(() => clearInterval(spam));
    await waitAllSigned(members, lines);
    const slots = Math.ceil((Date.now() - started) / slotMs);
    // one more round of spam, so that every member surely saw it outside the attacker's own slot
    await sleep(setup.members * slotMs);
    clearInterval(spam);
    // measured: each round of 4 slots loses at most the attacker's own slot and its grace
    t.diagnostic(`12 requests paid in ${slots} slots of ${slotMs} ms with a member claiming every turn`);
    // before turns were tied to slots, one such member stalled every proposer for good; a bound of
    // four rounds leaves room for a loaded machine
    assert.ok(slots <= 4 * setup.members, `paid after ${slots} slots`);
    for (const m of members) {
      assert.ok(
        (await counter(m, 'pegout_frames_dropped_total', 'turn_out_of_slot')) > 0,
        'out-of-slot turns are counted',
      );
      assert.ok(
        (await counter(m, 'pegout_signatures_rejected_total', 'proposal_malformed_proposal')) > 0,
        'its proposals are refused at the edge',
      );
    }
    const finals = await Promise.all(
      members.map(async (m) => (await listRequests(m.store, (r) => r.status === 'signed')).length),
    );
    assert.deepEqual(finals, [12, 12, 12]);
  });

  it('a proposer whose turn and grace are over holds no later turn, however busy it keeps the others', async (t) => {
    // 3-of-4 with member 4 hostile: all through its slot and its grace it announces its turn and sends
    // proposals of requests nobody ingested, which every member keeps to try again (it is not
    // settled); it never says its turn is done. The proposer after the grace must start its turn.
    const slotMs = 400;
    const setup = { members: 4, threshold: 3, requests: 0, utxos: [5_000_000n], hostile: 1, slotMs };
    const lines: string[] = [];
    const { federation, hostile } = await startMembers(t, setup, lines);
    const attacker = hostile[0]!.network;
    const funding = [{ txid: hex32(500), vout: 0, value: 5_000_000n, scriptPubKey: federation.scriptPubKey }];
    let n = 0;
    const spam = setInterval(() => {
      const held = turnHeldBy(attacker.key, Date.now(), slotMs, federation.pubkeys);
      if (held === undefined) return;
      attacker.broadcast('turn', held);
      const unknown = {
        id: `0x${hex32(90_000 + n++)}:0`,
        scriptPubKey: witnessScript(0, new Uint8Array(20).fill(9)),
        sats: 1_000_000n,
      };
      const [payment] = buildPayments([unknown], funding, 2, federation, { maxOutputs: 5 }).payments;
      attacker.broadcast('proposal', proposalFromPayment(payment!, held, attacker.key));
    }, 25);
    t.after(() => clearInterval(spam));
    // when each honest proposer's turn frame arrived, by slot
    const started = new Map<number, number>();
    attacker.on('message', (_peer: string, type: string, body: unknown) => {
      if (type === 'turn' && typeof body === 'number' && !started.has(body))
        started.set(body, Date.now() - body * slotMs);
    });
    await sleep(3 * setup.members * slotMs);
    clearInterval(spam);
    const first = Math.ceil((Date.now() - 3 * setup.members * slotMs) / slotMs) + 1;
    const last = Math.floor(Date.now() / slotMs) - 1;
    const after = (s: number) => proposerOf(s - 2, federation.pubkeys) === attacker.key;
    const checked = [];
    for (let s = first; s <= last; s++) {
      if (!after(s)) continue;
      checked.push(s);
      const at = started.get(s);
      t.diagnostic(
        `slot ${s}, two after the attacker's: turn started ${at === undefined ? 'never' : `${at} ms into it`}`,
      );
      // a tick runs every quarter slot; half a slot leaves room for a loaded machine
      assert.ok(at !== undefined && at < slotMs / 2, `slot ${s}'s proposer started ${at ?? 'never'} ms into it`);
    }
    assert.ok(checked.length >= 2, `slots checked: ${checked.join(', ')}`);
  });

  it('signature sets for proposals that never come are bounded per peer; the honest round still completes', async (t) => {
    const lines: string[] = [];
    const { members, hostile } = await withOneHostile(t, lines);
    const attacker = hostile[0]!.network;
    // on the links every member keeps: a set sent on one closed as a duplicate would be lost
    await heardByAll(attacker, members);
    // 2,000 sets of 1,000 signatures (64 KB each, 128 MB in all) for txids nobody proposed
    const blob = new Uint8Array(64 * 1000);
    let most = 0;
    for (let i = 0; i < 2000; i++) {
      attacker.broadcast('signatures', { txid: hex32(0xdead0000 + i), signatures: blob });
      if (i % 50 === 49) {
        await sleep(20);
        most = Math.max(most, ...members.map((m) => m.coordinator.held().earlyBytes));
      }
    }
    await waitAllSigned(members, lines);
    t.diagnostic(`early signature bytes held at most ${most} per member`);
    for (const m of members) {
      assert.ok(
        (await counter(m, 'pegout_frames_dropped_total', 'early_signatures_evicted')) > 0,
        'its oldest sets were evicted',
      );
      const held = m.coordinator.held();
      assert.ok(held.earlySets <= EARLY_CAPS.perPeer, `${held.earlySets} sets held`);
    }
    assert.ok(most <= EARLY_CAPS.bytesPerPeer, `${most} bytes held, the cap is ${EARLY_CAPS.bytesPerPeer} per peer`);
  });

  it("a member's refused frames write a bounded number of log lines; every refusal is still counted", async (t) => {
    const lines: string[] = [];
    const { members, hostile } = await withOneHostile(t, lines);
    const attacker = hostile[0]!.network;
    await heardByAll(attacker, members);
    const refusedLines = (): string[] =>
      lines.filter((l) => l.includes('"event":"proposal_refused"') && l.includes(attacker.key));
    // 600 proposals every member refuses as malformed, each once a warning line: within the link's frame burst
    const sent = 600;
    for (let i = 0; i < sent; i++) attacker.broadcast('proposal', { version: 2, round: i });
    const deadline = Date.now() + 20_000;
    for (const m of members) {
      while ((await counter(m, 'pegout_signatures_rejected_total', 'proposal_malformed_proposal')) < sent) {
        assert.ok(Date.now() < deadline, 'every malformed proposal is refused and counted');
        await sleep(50);
      }
    }
    const during = refusedLines().length;
    t.diagnostic(`${during} refusal lines for ${sent * members.length} refusals`);
    assert.ok(during <= members.length * (PEER_LOG_LIMIT.burst + 5), `${during} lines written`);
    // once its budget refilled, the next refusal is written, with how many were left out
    await sleep(1000 / PEER_LOG_LIMIT.perSecond + 100);
    attacker.broadcast('proposal', { version: 2, round: sent });
    while (refusedLines().filter((l) => l.includes('"suppressed"')).length < members.length) {
      assert.ok(
        Date.now() < deadline,
        `each member writes the refusal after the pause:\n${refusedLines().slice(-4).join('')}`,
      );
      await sleep(50);
    }
    const counts = refusedLines()
      .map((l) => JSON.parse(l) as { suppressed?: number })
      .reduce((a, l) => a + 1 + (l.suppressed ?? 0), 0);
    assert.equal(counts, (sent + 1) * members.length, 'lines written and lines left out add up to the refusals');
    await waitAllSigned(members, lines);
  });

  it('keeps at most COORDINATOR_CAPS.unsettled finalized payments not yet paid to announce, however many there are', async (t) => {
    // with no Bitcoin Core to settle them, finalized payments stay unpaid: more than the cap, each with its body
    const finalized = COORDINATOR_CAPS.unsettled + 20;
    const lines: string[] = [];
    const { members } = await startMembers(
      t,
      {
        members: 3,
        threshold: 2,
        requests: 1,
        utxos: [],
        before: (_i, store) => stageUnpaidFinalized(store, finalized),
      },
      lines,
    );
    for (const m of members) assert.equal(m.coordinator.held().unsettled, COORDINATOR_CAPS.unsettled);
  });

  it('a member that links again and again is announced to once, and once more when COORDINATOR_CAPS.announceGapMs have passed', async (t) => {
    // 2-of-3 with member 3 hostile; each honest member holds 20 finalized payments to announce (no
    // Bitcoin Core settles them). The hostile member drops and makes its links eight times in a row.
    const unsettled = 20;
    const lines: string[] = [];
    const { hostile } = await startMembers(
      t,
      {
        members: 3,
        threshold: 2,
        requests: 1,
        utxos: [],
        hostile: 1,
        before: (_i, store) => stageUnpaidFinalized(store, unsettled),
      },
      lines,
    );
    const h = hostile[0]!;
    const heard = new Map<string, number>();
    const listen = (net: PeerNetwork): void =>
      void net.on('message', (peer: string, type: string) => {
        if (type === 'finalized') heard.set(peer, (heard.get(peer) ?? 0) + 1);
      });
    const total = (): number => [...heard.values()].reduce((a, n) => a + n, 0);
    const relink = async (): Promise<void> => {
      const net = await h.relink();
      listen(net);
      const until = Date.now() + 10_000;
      while (net.connectedPeers().length < 2) {
        assert.ok(Date.now() < until, 'relinked');
        await sleep(10);
      }
    };
    // the announcements of the first links came while the members started, before anyone listened:
    // the gap they opened passes, then a new link is announced to at once, counted from here
    await sleep(COORDINATOR_CAPS.announceGapMs + 500);
    await relink();
    const deadline = Date.now() + 10_000;
    while (total() < 2 * unsettled) {
      assert.ok(Date.now() < deadline, `first announcements: ${JSON.stringify([...heard])}`);
      await sleep(20);
    }
    const started = Date.now();
    for (let k = 0; k < 8; k++) await relink();
    t.diagnostic(`8 relinks in ${Date.now() - started} ms; ${total()} payments announced so far`);
    assert.ok(Date.now() - started < COORDINATOR_CAPS.announceGapMs, 'the relinks fit in the gap');
    await sleep(COORDINATOR_CAPS.announceGapMs + 1500);
    // the first announcement, and one more once the gap has passed: never one a link
    assert.deepEqual([...heard.values()], [2 * unsettled, 2 * unsettled], `announced: ${JSON.stringify([...heard])}`);
  });

  it('after a restart, announces a finalized payment with every request it commits to, not only those matched here', async (t) => {
    const lines: string[] = [];
    // a payment of two requests, finalized by the federation
    const first = await startMembers(t, { members: 3, threshold: 2, requests: 2, utxos: [50_000_000n] }, lines);
    await waitAllSigned(first.members, lines);
    const [paid] = await finals(first.members[0]!.store);
    assert.ok(paid);
    assert.deepEqual(paid.requestIds, [requestId(0), requestId(1)]);
    const body = { tx: paid.tx, prevouts: paid.prevouts, requestIds: paid.requestIds };
    // member 0 of the same federation recorded it before ingesting the second request (what a
    // member that learns a payment from a peer while behind on the sidechain holds), then restarts;
    // member 1 never saw it and learns it only from member 0's announcement
    const { members } = await startMembers(
      t,
      {
        members: 3,
        threshold: 2,
        hostile: 1,
        requests: 2,
        utxos: [],
        ingests: (i, r) => !(i === 0 && r === 1),
        before: async (i, store, _pool, federation) => {
          if (i !== 0) return;
          const record = await recordFinalized(
            store,
            federation,
            paid.txid,
            parseTx(body.tx),
            body,
            'test',
            TEST_POLICY,
          );
          assert.deepEqual(record?.requestIds, [requestId(0)]);
          assert.deepEqual(record?.unmatched, { [requestId(1)]: 2 });
        },
      },
      lines,
    );
    const deadline = Date.now() + 20_000;
    while (!(await members[1]!.store.get(finalizedKey(paid.txid)))) {
      assert.ok(Date.now() < deadline, `member 1 never recorded the announced payment; logs:\n${lines.join('')}`);
      await sleep(100);
    }
    const [learned] = await finals(members[1]!.store);
    assert.deepEqual(learned?.requestIds, [requestId(0), requestId(1)]);
    assert.equal(await counter(members[1]!, 'pegout_signatures_rejected_total', 'finalized_malformed'), 0);
  });

  it('looks up a federation output it does not know in Bitcoin Core before refusing a proposal that spends it', async (t) => {
    // 2-of-3 with one federation output: members 2 and 3 never saw it; member 3 can look it up
    const missing = { txid: hex32(500), vout: 0 };
    const lookedUp: string[] = [];
    const lines: string[] = [];
    const { members } = await startMembers(
      t,
      {
        members: 3,
        threshold: 2,
        requests: 3,
        utxos: [5_000_000n],
        before: async (i, store) => {
          if (i > 0) await store.transaction((batch) => unregisterUtxo(batch, missing));
        },
        recover: (i, store, federation) =>
          i === 2
            ? async (o) => {
                lookedUp.push(`${o.txid}:${o.vout}`);
                await store.transaction((batch) =>
                  registerUtxo(batch, {
                    ...o,
                    value: 5_000_000n,
                    scriptPubKey: federation.scriptPubKey,
                    height: 0,
                    pegIn: true,
                  }),
                );
              }
            : undefined,
      },
      lines,
    );
    const deadline = Date.now() + 30_000;
    const signed = async (m: Member): Promise<number> =>
      (await listRequests(m.store, (r) => r.status === 'signed')).length;
    while ((await signed(members[0]!)) < 3 || (await signed(members[2]!)) < 3) {
      assert.ok(Date.now() < deadline, `not paid in time; logs:\n${lines.join('')}`);
      await sleep(100);
    }
    assert.deepEqual([...new Set(lookedUp)], [`${missing.txid}:0`]);
    assert.ok(
      (await counter(members[1]!, 'pegout_signatures_rejected_total', 'proposal_unknown_input')) > 0,
      'a member that cannot look it up refuses',
    );
  });

  it('a proposal of 50,000 inputs is refused at the edge, before any store read; the honest round completes', async (t) => {
    const lines: string[] = [];
    const { members, hostile } = await withOneHostile(t, lines);
    const attacker = hostile[0]!.network;
    // 50,000 inputs: about 2 MB of transaction and 1.5 MB of prevouts, under the 4 MiB frame cap
    const inputs = Array.from({ length: 50_000 }, (_, i) => ({
      txid: hex32(i),
      vout: 0,
      sequence: 0xfffffffd,
      scriptSig: new Uint8Array(0),
      witness: [],
    }));
    const unsignedTx = serializeTx({
      version: 2,
      locktime: 0,
      inputs,
      outputs: [{ value: 0n, scriptPubKey: Uint8Array.of(0x6a) }],
    });
    const prevouts = inputs.map(() => ({ value: 1n, scriptPubKey: new Uint8Array(0) }));
    // sent once, so only on links the members keep; all ten in one go, over the same links
    let reached = 0;
    while (reached < members.length) {
      await heardByAll(attacker, members);
      const sent = Array.from({ length: 10 }, (_, i) =>
        attacker.broadcast('proposal', {
          version: 1,
          round: i,
          proposer: attacker.key,
          unsignedTx,
          prevouts,
          requestIds: [requestId(0)],
        }),
      );
      // a link a member closed as a duplicate since: again, on the one that replaced it
      reached = Math.min(...sent);
    }
    await waitAllSigned(members, lines);
    // 35 MB of frames each: they may still be arriving after the honest round is done
    const deadline = Date.now() + 20_000;
    for (const m of members) {
      while ((await counter(m, 'pegout_signatures_rejected_total', 'proposal_malformed_proposal')) === 0) {
        assert.ok(Date.now() < deadline, 'refused as malformed at the edge');
        await sleep(50);
      }
    }
    assert.ok(
      lines.some((l) => l.includes('over the 100000 that Core relays')),
      'the refusal names the cap',
    );
  });
});
