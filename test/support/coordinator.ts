// Coordinators of a 3-of-4 federation driven frame by frame: real stores and pools, a network that
// records what each sends (nothing is delivered by itself) and a clock the test moves.
import type { TestContext } from 'node:test';
import { toHex } from '../../src/bitcoin/bytes.js';
import { buildFederation } from '../../src/bitcoin/federation.js';
import { witnessScript } from '../../src/bitcoin/script.js';
import { parseRequestId } from '../../src/evm/request-id.js';
import { stageNewRequest } from '../../src/evm/request-store.js';
import { Coordinator } from '../../src/node/coordinator.js';
import { createLogger } from '../../src/node/log.js';
import { Outflow } from '../../src/node/outflow.js';
import type { PeerNetwork } from '../../src/p2p/network.js';
import { SigningPool } from '../../src/signing/pool.js';
import { schnorrBackend } from '../../src/signing/schnorr.js';
import type { Store } from '../../src/storage/store.js';
import { allScriptPathSighashes } from '../../src/bitcoin/sighash.js';
import { serializeTx, withWitnesses } from '../../src/bitcoin/tx.js';
import { assembleWitnesses } from '../../src/signing/collector.js';
import { buildReplacement, type Payment, type PaymentRequest, type SpendableUtxo } from '../../src/wallet/payment.js';
import { proposalFromPayment } from '../../src/wallet/proposal.js';
import { registerUtxo } from '../../src/wallet/utxos.js';
import type { FinalizedBody, Proposal } from '../../src/storage/records.js';
import { TEST_POLICY } from './policy.js';
import { openTempStore } from './tempdir.js';
import { testRequest } from './requests.js';

export const backend = schnorrBackend();
const secrets = [1, 2, 3, 4].map((i) => Buffer.alloc(32, i));
export const federation = buildFederation({
  network: 'regtest',
  threshold: 3,
  pubkeys: secrets.map((k) => backend.xonlyPublicKey(k)),
});
/** Members in the federation's (sorted) order: their key hex and secret. */
export const M = federation.pubkeys.map((pk) => {
  const hex = toHex(pk);
  const secret = secrets.find((s) => toHex(backend.xonlyPublicKey(s)) === hex)!;
  return { hex, secret };
});

export const hex32 = (n: number): string => n.toString(16).padStart(64, '0');
export const REQ = (i: number): PaymentRequest => ({
  id: `0x${hex32(1000 + i)}:0`,
  scriptPubKey: witnessScript(0, new Uint8Array(20).fill((i % 250) + 1)),
  sats: 1_000_000n,
});
export const UTXO = (i: number): SpendableUtxo => ({
  txid: hex32(5000 + i),
  vout: 0,
  value: 2_000_000n,
  scriptPubKey: federation.scriptPubKey,
});

/** A store holding requests 0 … requests−1 and outputs 0 … utxos−1. */
export async function memberStore(t: TestContext, requests: number, utxos: number): Promise<Store> {
  const store = await openTempStore(t, federation.descriptor);
  const batch = store.batch();
  for (let i = 0; i < requests; i++) {
    const r = REQ(i);
    stageNewRequest(
      batch,
      testRequest({ ...parseRequestId(r.id), blockNumber: 5, sats: r.sats, scriptPubKey: r.scriptPubKey }),
      'then',
    );
  }
  for (let i = 0; i < utxos; i++) await registerUtxo(batch, { ...UTXO(i), height: 1, pegIn: true });
  await batch.write({ sync: true });
  return store;
}

/** A payment of `requests` spending exactly `inputs`, as `proposer` proposes it. */
export function proposal(requests: PaymentRequest[], inputs: SpendableUtxo[], proposer: string, rate = 2): Proposal {
  const payment = buildReplacement(requests, inputs, rate, federation);
  if (!payment) throw new Error('no payment');
  return proposalFromPayment(payment, 1, proposer);
}

/**
 * `payment` signed by `members` (indices in sorted order), as the finalized frame announces it;
 * `tamper` may change a member's signatures first.
 */
export function finalizedBody(
  payment: Payment,
  requestIds: string[],
  members: number[],
  tamper: (member: number, signatures: Uint8Array[]) => void = () => {},
): FinalizedBody {
  const sighashes = allScriptPathSighashes(payment.tx, payment.prevouts, federation.leafHash);
  const sets = new Map(
    members.map((k) => {
      const signatures = sighashes.map((m) => backend.sign(M[k]!.secret, m, 'zero'));
      tamper(k, signatures);
      return [M[k]!.hex, signatures];
    }),
  );
  return {
    tx: serializeTx(withWitnesses(payment.tx, assembleWitnesses(federation, sets, payment.tx.inputs.length))),
    prevouts: payment.prevouts.map(({ value, scriptPubKey }) => ({ value, scriptPubKey })),
    requestIds,
  };
}

export interface Sent {
  readonly to: string | '*';
  readonly type: string;
  readonly body: unknown;
}

/** The coordinator's private parts these tests drive. */
export interface Internals {
  /** A frame as the links hand it over. */
  handle(peer: string, type: string, body: unknown): Promise<void>;
  onProposalFrame(peer: string, body: unknown): Promise<void>;
  onSignatures(peer: string, body: { txid: string; signatures: Uint8Array }): Promise<void>;
  onFinalizedFrame(peer: string, body: unknown): Promise<void>;
  onTurnFrame(peer: string, type: string, body: unknown): void;
  merges(rate: number, policy: typeof TEST_POLICY, now: number, slot: number): Promise<Proposal[]>;
  /** Proposals kept for requests not yet ingested, put to the signer again where `due`. */
  retryWaiting(due: (r: { at: number }) => boolean): Promise<void>;
  collectDeferred(now: number): Promise<void>;
  tick(ingested?: boolean): Promise<void>;
  readonly rivals: Map<string, { from: Set<string>; since: number }>;
  readonly proposals: Map<string, { since: number }>;
  readonly deferred: Map<string, unknown>;
  readonly unsettled: Map<string, FinalizedBody>;
  /** Peer frames taken from the links and not yet handled. */
  queued: number;
  readonly collector: { signers(txid: string): string[]; count(txid: string): number };
}

export interface Harness {
  readonly c: Internals;
  readonly coordinator: Coordinator;
  readonly store: Store;
  readonly sent: Sent[];
  readonly clock: { now: number };
  readonly pool: SigningPool;
}

/** Member `index` (in sorted order) as a coordinator on a recording network. */
export async function coordinatorOf(
  t: TestContext,
  index: number,
  store: Store,
  opts: {
    slotMs?: number;
    pool?: SigningPool;
    verifyWrap?: (pool: SigningPool) => SigningPool;
    recoverInput?: (outpoint: { txid: string; vout: number }) => Promise<unknown>;
  } = {},
): Promise<Harness> {
  const me = M[index]!;
  const realPool = opts.pool ?? new SigningPool(federation, { secretKey: me.secret, size: 1 });
  if (!opts.pool) t.after(() => realPool.destroy());
  const pool = opts.verifyWrap ? opts.verifyWrap(realPool) : realPool;
  const sent: Sent[] = [];
  const clock = { now: 0 };
  const network = {
    key: me.hex,
    broadcast(type: string, body: unknown) {
      sent.push({ to: '*', type, body });
    },
    send(to: string, type: string, body: unknown) {
      sent.push({ to, type, body });
    },
    misbehaved(peer: string, fault: string) {
      sent.push({ to: peer, type: 'misbehaved', body: fault });
    },
    registerType() {},
    on() {},
    handle() {},
    stats: { queued: 0 },
  } as unknown as PeerNetwork;
  const coordinator = new Coordinator({
    store,
    federation,
    pool,
    network,
    policy: async () => TEST_POLICY,
    paidDepth: 1,
    maxOutputs: 10,
    slotMs: opts.slotMs ?? 1000,
    now: () => clock.now,
    log: createLogger({ level: 'error', write: () => {} }),
    outflow: new Outflow(store, me.hex, federation.threshold, federation.pubkeys.map(toHex), TEST_POLICY.limits),
    paused: () => false,
    onFinalized: async () => {},
    ...(opts.recoverInput ? { recoverInput: opts.recoverInput } : {}),
  });
  t.after(() => coordinator.stop());
  return { c: coordinator as unknown as Internals, coordinator, store, sent, clock, pool: realPool };
}

/**
 * Members 0–2 of the federation, on a network that delivers everything among them, each with
 * `requests` requests and eight outputs; member 3 (the malicious one in the tests) is silent.
 * `deliver` passes frames until none moves; `run` ticks every member four times a slot.
 */
export async function honestMembers(t: TestContext, requests: number, slotMs: number) {
  const hs: Harness[] = [];
  for (const i of [0, 1, 2]) hs.push(await coordinatorOf(t, i, await memberStore(t, requests, 8), { slotMs }));
  const marks = hs.map(() => 0);
  for (const h of hs) h.clock.now = 10 * slotMs;
  const deliver = async (): Promise<void> => {
    for (let round = 0; round < 20; round++) {
      let moved = 0;
      for (const [i, h] of hs.entries()) {
        const frames = h.sent.slice(marks[i]);
        marks[i] = h.sent.length;
        for (const f of frames) {
          if (!['proposal', 'signatures', 'finalized', 'turn', 'turn_done'].includes(f.type)) continue;
          for (const [j, g] of hs.entries()) {
            if (j === i || (f.to !== '*' && f.to !== M[j]!.hex)) continue;
            moved++;
            if (f.type === 'proposal' || f.type === 'turn' || f.type === 'turn_done')
              g.c.onTurnFrame(M[i]!.hex, f.type, f.body);
            await g.c.handle(M[i]!.hex, f.type, f.body);
          }
        }
      }
      if (moved === 0) return;
    }
  };
  const run = async (fromSlot: number, slots: number): Promise<void> => {
    for (let at = fromSlot * slotMs; at < (fromSlot + slots) * slotMs; at += slotMs / 4) {
      for (const h of hs) h.clock.now = at;
      for (const h of hs) {
        await h.c.tick();
        await deliver();
      }
    }
  };
  return { hs, deliver, run };
}

/**
 * Member 3 splits members 0–2 over two payments of request 0 that do not conflict: C (input 0) to
 * members 0 and 1, C2 (input 1) to member 2; each signs the one it got, and the sets go round.
 */
export async function splitOverRivals({
  hs,
  deliver,
}: Awaited<ReturnType<typeof honestMembers>>): Promise<{ C: Proposal; C2: Proposal }> {
  const from = M[3]!.hex;
  const C = proposal([REQ(0)], [UTXO(0)], from);
  const C2 = proposal([REQ(0)], [UTXO(1)], from);
  for (const [h, p] of [
    [hs[0]!, C],
    [hs[1]!, C],
    [hs[2]!, C2],
  ] as const)
    await h.c.onProposalFrame(from, p);
  await deliver();
  return { C, C2 };
}
