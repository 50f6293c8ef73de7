import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it, type TestContext } from 'node:test';
import { decodeAddress } from '../../../src/bitcoin/address.js';
import { equal } from '../../../src/bitcoin/bytes.js';
import { parseTx, serializeTx, type Transaction, type TxOutput } from '../../../src/bitcoin/tx.js';
import { requestCounts, type Devnet } from '../../../src/devnet/federation.js';
import { devnetDestination } from '../../../src/devnet/requests.js';
import { getRequest } from '../../../src/evm/request-store.js';
import { declaredOutputs } from '../../../src/node/member.js';
import { SPACES } from '../../../src/storage/keys.js';
import { Store } from '../../../src/storage/store.js';
import { commitsTo } from '../../../src/wallet/commitment.js';
import { buildPayments, paymentOutputs, type PaymentRequest, type SpendableUtxo } from '../../../src/wallet/payment.js';
import { checkProposal, proposalFromPayment, type CheckedProposal } from '../../../src/wallet/proposal.js';
import type { PegoutStatus } from '../../../src/api/status.js';
import {
  checkExactlyOnce,
  conflicts,
  federationOfProcesses,
  PEGOUT_SATS,
  send,
  waitSigned,
} from '../../support/federation.js';
import { startHostiles, type Hostile } from '../../support/hostile.js';
import type { FinalizedRecord, Proposal, SignatureRecord } from '../../../src/storage/records.js';

// f = 2t − n − 1 malicious members (SPEC §3 "Byzantine members") against n − f honest member
// processes on loopback. Each hostile member reuses a killed member's key, port and links in this
// process; together they collude (one shared view) and, round after round while the honest
// members pay batches of requests:
//   - disjoint: two payments of the same requests from disjoint inputs, one to each half of the
//     honest members, both signed by every hostile member: two payments of one request at t?
//   - labelling: one transaction sent to different honest members under different requestIds
//     (the committed one to one member, requests paying the same address and amount to others);
//   - amounts: a payout below sats − share with the rest to change, change drained to the fee,
//     a share far above the market;
//   - stealing: payments of other requests from the inputs of live payments it heard of (honest
//     proposals, and its own half-signed disjoint payments).
// The honest members must pay every request exactly once, exactly, and count what they refused.

const FUNDING = { count: 40, sats: 10_000_000 };
const FEE_RATE = 2; // the devnet's declared fee rate; members accept up to 3× (config fees.maxMultiple)
const BATCHES = 3;
const PER_BATCH = 6;

const outpoint = (i: { txid: string; vout: number }): string => `${i.txid}:${i.vout}`;

/** The f colluding hostile members, in this process, with one shared view of the federation. */
class Adversary {
  /** Requests it knows (from the test's sends and from honest proposals): id → what it pays. */
  readonly requests = new Map<string, PaymentRequest>();
  /** Inputs of payments honest members proposed or finalized. */
  readonly taken = new Set<string>();
  /** Inputs of its own proposals that honest members may have signed. */
  readonly used = new Set<string>();
  /** Its own proposals some honest members may have signed (their inputs held there). */
  readonly orphans: Proposal[] = [];
  readonly finalized = new Set<string>();
  /** Honest proposals heard, by txid. */
  readonly heard = new Map<string, CheckedProposal>();
  readonly sent: Record<string, number> = { disjoint: 0, labelled: 0, amounts: 0, stolen: 0, orphanStolen: 0 };
  private readonly funding: SpendableUtxo[];

  constructor(
    readonly devnet: Devnet,
    readonly hostiles: readonly Hostile[],
    readonly honest: readonly string[],
    private readonly maxSteals: number,
  ) {
    const fed = devnet.federation;
    // the order an honest proposer selects equal outputs in (largest first, ties by outpoint):
    // the hostile members take the ones honest payments would take next
    this.funding = declaredOutputs(fed, FUNDING.count, FUNDING.sats)
      .map((o) => ({ ...o, scriptPubKey: fed.scriptPubKey }))
      .sort((a, b) => (a.txid < b.txid ? -1 : a.txid > b.txid ? 1 : a.vout - b.vout));
    for (const h of hostiles) {
      h.net.on('message', (peer: string, type: string, body: unknown) => {
        if (!this.honest.includes(peer)) return;
        if (type === 'finalized') {
          try {
            const tx = parseTx((body as { tx: Uint8Array }).tx);
            for (const input of tx.inputs) this.taken.add(outpoint(input));
          } catch {
            // not ours to judge
          }
        }
        if (type !== 'proposal') return;
        let checked: CheckedProposal;
        try {
          checked = checkProposal(body);
        } catch {
          return;
        }
        if (this.heard.has(checked.txid)) return;
        this.heard.set(checked.txid, checked);
        for (const input of checked.tx.inputs) this.taken.add(outpoint(input));
        for (const [k, id] of checked.proposal.requestIds.entries()) {
          const out = checked.tx.outputs[k + 1];
          if (out && !this.requests.has(id))
            this.requests.set(id, { id, scriptPubKey: out.scriptPubKey, sats: PEGOUT_SATS });
        }
        if (this.sent.stolen! < this.maxSteals) void this.steal(checked).catch(() => undefined);
      });
    }
  }

  learn(ids: readonly string[]): void {
    for (const [i, id] of ids.entries())
      this.requests.set(id, {
        id,
        scriptPubKey: decodeAddress(devnetDestination(i), 'regtest').scriptPubKey,
        sats: PEGOUT_SATS,
      });
  }

  /** Declared outputs no payment it heard of spends and it did not use, in the honest selection order. */
  private free(count: number): SpendableUtxo[] {
    const out: SpendableUtxo[] = [];
    for (const u of this.funding) {
      if (out.length === count) break;
      if (!this.taken.has(outpoint(u)) && !this.used.has(outpoint(u))) out.push(u);
    }
    assert.equal(out.length, count, 'the hostile members ran out of declared outputs');
    for (const u of out) this.used.add(outpoint(u));
    return out;
  }

  private by(i: number): Hostile {
    return this.hostiles[i % this.hostiles.length]!;
  }

  /**
   * An honestly built payment of `ids` from exactly `inputs`, proposed by hostile `from`; undefined when they cannot
   * pay them all.
   */
  private build(
    ids: readonly string[],
    inputs: readonly SpendableUtxo[],
    from: Hostile,
    rate = FEE_RATE,
  ): Proposal | undefined {
    const requests = ids.map((id) => this.requests.get(id)!);
    const plan = buildPayments(requests, inputs, rate, this.devnet.federation, { maxOutputs: 100 });
    const [payment] = plan.payments;
    if (!payment || plan.payments.length !== 1 || plan.deferred.length > 0 || payment.prevouts.length !== inputs.length)
      return undefined;
    return proposalFromPayment(payment, Math.floor(Date.now() / 400), from.key);
  }

  /** Every hostile member signs `proposal` (all inputs, input order) and sends its set to every honest member. */
  private async signAll(proposal: Proposal): Promise<void> {
    const { tx, txid } = checkProposal(proposal);
    for (const h of this.hostiles) {
      const signatures = await h.pool.signTransaction(tx, proposal.prevouts);
      for (const peer of this.honest) h.net.send(peer, 'signatures', { txid, signatures });
    }
  }

  private sendTo(from: Hostile, peers: readonly string[], proposal: Proposal): void {
    for (const peer of peers) from.net.send(peer, 'proposal', proposal);
  }

  /**
   * Two payments of `ids` from disjoint inputs, one to each half of the honest members, each with every hostile
   * signature.
   */
  async disjoint(round: number, ids: readonly string[]): Promise<void> {
    const [a, b] = this.free(2);
    const from = this.by(round);
    const pa = this.build(ids, [a!], from);
    const pb = this.build(ids, [b!], from);
    assert.ok(pa && pb, 'one declared output pays two requests');
    const half = Math.floor(this.honest.length / 2);
    this.sendTo(from, this.honest.slice(0, half), pa);
    this.sendTo(from, this.honest.slice(half), pb);
    await this.signAll(pa);
    await this.signAll(pb);
    this.orphans.push(pa, pb);
    this.sent.disjoint! += 2;
  }

  /**
   * One transaction paying `id`, under its committed label to one honest member and under
   * `aliases` (requests paying the same address and amount where it has them) to the others.
   */
  async labelling(round: number, id: string, aliases: readonly string[]): Promise<void> {
    const from = this.by(round + 1);
    const p = this.build([id], this.free(1), from);
    assert.ok(p);
    const chosen = round % this.honest.length;
    for (const [i, peer] of this.honest.entries()) {
      const alias = aliases[i % aliases.length]!;
      from.net.send(peer, 'proposal', { ...p, requestIds: i === chosen ? [id] : [alias] });
    }
    await this.signAll(p);
    this.orphans.push(p);
    this.sent.labelled! += 1;
  }

  /** Payments of `ids` with the right commitment and the wrong amounts, to every honest member. */
  async amounts(round: number, ids: readonly string[]): Promise<void> {
    const from = this.by(round);
    const honest = this.build(ids, this.free(1), from);
    assert.ok(honest);
    const tx = parseTx(honest.unsignedTx);
    const k = ids.length;
    const change = k + 1;
    assert.equal(tx.outputs.length, k + 2, 'the honest payment has change');
    const edit = (f: (outs: { value: bigint; scriptPubKey: Uint8Array }[]) => void): Proposal => {
      const outputs: TxOutput[] = tx.outputs.map((o) => ({ ...o }));
      f(outputs);
      const edited: Transaction = { ...tx, outputs };
      return { ...honest, unsignedTx: serializeTx(edited) };
    };
    const variants = [
      // output 1 underpaid, the difference to change
      edit((o) => {
        o[1]!.value -= 200_000n;
        o[change]!.value += 200_000n;
      }),
      // every payout underpaid alike (a larger uniform share), the difference to change
      edit((o) => {
        for (let j = 1; j <= k; j++) o[j]!.value -= 50_000n;
        o[change]!.value += 50_000n * BigInt(k);
      }),
      // the federation's change drained into the fee
      edit((o) => {
        o[change]!.value -= 3_000_000n;
      }),
      // a share far above the market, change exact
      edit((o) => {
        for (let j = 1; j <= k; j++) o[j]!.value -= 150_000n;
      }),
      // built honestly at 40× the market rate
      this.build(ids, this.free(1), from, FEE_RATE * 40)!,
    ];
    for (const v of variants) {
      this.sendTo(from, this.honest, v);
      await this.signAll(v);
    }
    this.sent.amounts! += variants.length;
  }

  /** A payment of requests other than `victim`'s, from `victim`'s inputs. */
  private async stealFrom(victim: Proposal, from: Hostile): Promise<boolean> {
    const inputs: SpendableUtxo[] = checkProposal(victim).tx.inputs.map((input, i) => ({
      txid: input.txid,
      vout: input.vout,
      value: victim.prevouts[i]!.value,
      scriptPubKey: victim.prevouts[i]!.scriptPubKey,
    }));
    const others = [...this.requests.keys()].filter((id) => !victim.requestIds.includes(id)).reverse();
    for (let count = Math.min(3, others.length); count >= 1; count--) {
      const p = this.build(others.slice(0, count), inputs, from);
      if (!p) continue;
      this.sendTo(from, this.honest, p);
      await this.signAll(p);
      return true;
    }
    return false;
  }

  async steal({ proposal }: CheckedProposal): Promise<void> {
    if (this.sent.stolen! >= this.maxSteals) return;
    this.sent.stolen! += 1;
    if (!(await this.stealFrom(proposal, this.by(this.sent.stolen!)))) this.sent.stolen! -= 1;
  }

  /** Its own half-signed payments are live payments where they were signed: their inputs, for other requests. */
  async stealOrphans(round: number): Promise<void> {
    for (const p of this.orphans.splice(0)) {
      if (await this.stealFrom(p, this.by(round))) this.sent.orphanStolen! += 1;
    }
  }
}

const REJECTED = /^pegout_signatures_rejected_total\{reason="proposal_([a-z_]+)"\} (\d+)$/gm;

async function refusals(devnet: Devnet, i: number): Promise<Record<string, number>> {
  const text = await (
    await fetch(`${devnet.members[i]!.apiUrl}/metrics`, { signal: AbortSignal.timeout(5000) })
  ).text();
  return Object.fromEntries([...text.matchAll(REJECTED)].map((m) => [m[1]!, Number(m[2])]));
}

/** Whether every honest member counts `count` requests signed within `ms`; no assertion. */
async function settledWithin(devnet: Devnet, count: number, members: readonly number[], ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    const counts = await Promise.all(
      members.map((i) => requestCounts(devnet.members[i]!).catch(() => ({}) as Record<string, number>)),
    );
    if (counts.every((c) => (c.signed ?? 0) === count)) return true;
    if (Date.now() > deadline) return false;
    await sleep(250);
  }
}

/** The warn lines of a member's log that say why payments did not progress, condensed. */
async function stallLines(logFile: string, last = 12): Promise<string[]> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  const interesting =
    /"event":"(proposal_refused|own_proposal_refused|merge_impossible|merging|signatures_refused|coordinator_error)"/;
  return text
    .split('\n')
    .filter((l) => interesting.test(l))
    .slice(-last)
    .map((l) => {
      const o = JSON.parse(l) as Record<string, unknown>;
      return `${String(o.ts).slice(11, 23)} ${String(o.event)} ${String(o.reason ?? '')} ${String(o.txid ?? '').slice(0, 12)} ${String(o.detail ?? o.rivals ?? '').slice(0, 160)}`;
    });
}

async function hostileRun(ctx: TestContext, n: number, t: number): Promise<void> {
  const f = 2 * t - n - 1;
  const started = Date.now();
  const devnet = await federationOfProcesses(ctx, { members: n, threshold: t, funding: FUNDING });
  const hostileIdx = Array.from({ length: f }, (_, i) => n - f + i);
  const honestIdx = Array.from({ length: n - f }, (_, i) => i);
  const hostiles = await startHostiles(ctx, devnet, hostileIdx);
  const adversary = new Adversary(
    devnet,
    hostiles,
    honestIdx.map((i) => devnet.members[i]!.key),
    12,
  );

  const all: string[] = [];
  const batches: string[][] = [];
  for (let round = 0; round < BATCHES; round++) {
    const sent = await send(devnet, PER_BATCH);
    batches.push(sent.ids);
    all.push(...sent.ids);
    adversary.learn(sent.ids);
    const fresh = sent.ids;
    // fresh requests, before the honest members ingest them: they keep the proposals and try them
    // again as their EVM view catches up, ahead of their own proposer's payment
    await adversary.disjoint(round, fresh.slice(0, 2));
    // the same destination (index 2) and amount in every batch: earlier batches' requests are aliases
    const aliases = batches.slice(0, -1).map((b) => b[2]!);
    await adversary.labelling(round, fresh[2]!, aliases.length > 0 ? aliases : [fresh[3]!]);
    await adversary.amounts(round, fresh.slice(3, 5));
    if (round > 0) await adversary.amounts(round, batches[round - 1]!.slice(0, 2));
    await adversary.stealOrphans(round);
    const ok = await settledWithin(devnet, all.length, honestIdx, 12_000);
    ctx.diagnostic(
      `round ${round}: ${all.length} requests sent, ${ok ? 'all' : 'NOT all'} signed by every honest member after ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
  }

  // liveness: every request paid by the honest members (checked after safety, so both are reported)
  let stalled: Error | undefined;
  try {
    await waitSigned(devnet, all.length, honestIdx, 30_000);
  } catch (err) {
    stalled = err as Error;
    for (const i of honestIdx) {
      ctx.diagnostic(
        `member ${i + 1} (${devnet.members[i]!.key.slice(0, 16)}) ${JSON.stringify(await requestCounts(devnet.members[i]!).catch(() => ({})))}`,
      );
      for (const line of await stallLines(devnet.members[i]!.logFile)) ctx.diagnostic(`  ${line}`);
    }
  }

  // the honest members' APIs: each request's finalized payments
  const finalizedByApi = new Map<string, Set<string>>();
  for (const i of honestIdx) {
    for (const id of all) {
      const res = await fetch(`${devnet.members[i]!.apiUrl}/pegouts/${encodeURIComponent(id)}`, {
        signal: AbortSignal.timeout(5000),
      });
      if (res.status !== 200) continue;
      const s = (await res.json()) as PegoutStatus;
      for (const p of s.payments.filter((x) => x.finalized))
        (finalizedByApi.get(id) ?? finalizedByApi.set(id, new Set()).get(id)!).add(p.txid);
    }
  }
  const counted: Record<string, number> = {};
  for (const i of honestIdx) {
    const r = await refusals(devnet, i);
    ctx.diagnostic(`member ${i + 1} refused: ${JSON.stringify(r)}`);
    for (const [reason, k] of Object.entries(r)) counted[reason] = (counted[reason] ?? 0) + k;
  }
  ctx.diagnostic(`hostile frames: ${JSON.stringify(adversary.sent)}`);
  for (const h of hostiles) await h.net.stop();
  await devnet.stop();

  // the honest members' stores: finalized payments, and what each of them signed (the committed order)
  const finals = new Map<string, FinalizedRecord>();
  const order = new Map<string, readonly string[]>();
  const requests = new Map<string, PaymentRequest>();
  for (const i of honestIdx) {
    const store = await Store.open(devnet.members[i]!.storeDir, { descriptor: devnet.federation.descriptor });
    try {
      for await (const [, rec] of store.entries<FinalizedRecord>({ prefix: SPACES.finalized }))
        finals.set(rec.txid, rec);
      for await (const [, rec] of store.entries<SignatureRecord>({ prefix: SPACES.signatureMade }))
        order.set(rec.txid, rec.requestIds);
      for await (const [, rec] of store.entries<Proposal>({ prefix: SPACES.proposal }))
        if (!order.has(checkProposal(rec).txid)) order.set(checkProposal(rec).txid, rec.requestIds);
      for (const id of all) {
        const r = await getRequest(store, id);
        if (r?.scriptPubKey && !requests.has(id)) requests.set(id, { id, scriptPubKey: r.scriptPubKey, sats: r.sats });
      }
    } finally {
      await store.close();
    }
  }

  // safety (SPEC §3 invariant 1): a request in two finalized payments only when they conflict
  // pairwise (a merge or a replacement that raced its rival to t): at most one can ever confirm
  const conflicting = conflicts(finals);
  const payers = new Map<string, Set<string>>();
  for (const rec of finals.values())
    for (const id of [...rec.requestIds, ...Object.keys(rec.unmatched ?? {})])
      (payers.get(id) ?? payers.set(id, new Set()).get(id)!).add(rec.txid);
  for (const [id, txids] of [...payers, ...finalizedByApi]) {
    if (txids.size > 1) {
      const known = [...txids].every((x) => finals.has(x));
      const conflict = known && [...txids].every((a) => [...txids].every((b) => conflicting(a, b)));
      assert.ok(
        conflict,
        `request ${id} is in ${txids.size} finalized payments that do not all conflict: ${[...txids].join(', ')} (paid twice)`,
      );
      ctx.diagnostic(
        `request ${id}: ${txids.size} conflicting finalized payments (only one can confirm): ${[...txids].join(', ')}`,
      );
    }
  }
  // every finalized payment pays what it commits to, exactly: output 0 commits to the requests
  // (in the order some honest member signed), output k + 1 = sats − one uniform share, change exact
  const fed = devnet.federation;
  for (const rec of finals.values()) {
    const tx = parseTx(rec.tx);
    const ids = order.get(rec.txid);
    assert.ok(ids, `finalized payment ${rec.txid} was signed by no honest member`);
    assert.deepEqual(
      [...ids].sort(),
      [...rec.requestIds, ...Object.keys(rec.unmatched ?? {})].sort(),
      `payment ${rec.txid} is recorded as paying what it commits to`,
    );
    assert.ok(commitsTo(tx.outputs[0]!.scriptPubKey, ids), `output 0 of ${rec.txid} commits to its requests`);
    assert.equal(tx.outputs[0]!.value, 0n);
    const paid = ids.map((id) => requests.get(id)!);
    assert.ok(paid.every(Boolean), `payment ${rec.txid} pays requests the honest members know`);
    const share = paid[0]!.sats - tx.outputs[1]!.value;
    const inValue = rec.prevouts.reduce((a, p) => a + p.value, 0n);
    const want = paymentOutputs(paid, inValue, share, fed);
    assert.equal(
      tx.outputs.length,
      want.length,
      `payment ${rec.txid}: commitment, one output per request, exact change`,
    );
    for (const [o, w] of want.entries()) {
      assert.ok(
        equal(tx.outputs[o]!.scriptPubKey, w.scriptPubKey),
        `payment ${rec.txid} output ${o} pays the right script`,
      );
      assert.equal(tx.outputs[o]!.value, w.value, `payment ${rec.txid} output ${o} pays exactly ${w.value}`);
    }
    const rate = Number(rec.fee) / rec.vsize;
    assert.ok(
      share >= 0n && rate >= 1 && rate <= FEE_RATE * 3,
      `payment ${rec.txid} pays a market fee: share ${share}, ${rate.toFixed(2)} sat/vB`,
    );
  }
  ctx.diagnostic(
    `${finals.size} finalized payments for ${all.length} requests; ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );

  // the attacks were seen and refused, by reason
  const sum = (...reasons: string[]): number => reasons.reduce((a, r) => a + (counted[r] ?? 0), 0);
  assert.ok(sum('bad_commitment') > 0, `labellings refused as bad_commitment: ${JSON.stringify(counted)}`);
  assert.ok(
    sum('wrong_amount') > 0 && sum('bad_change') > 0,
    `underpayment and drained change refused: ${JSON.stringify(counted)}`,
  );
  assert.ok(
    sum('fee_rate_too_high', 'fee_share_too_high') > 0,
    `shares above the market refused: ${JSON.stringify(counted)}`,
  );
  assert.ok(
    sum('input_held', 'double_payment') > 0,
    `stolen inputs and second payments refused: ${JSON.stringify(counted)}`,
  );

  if (stalled) throw stalled;
  // every request paid, and paid by more than one finalized payment only when those conflict
  // pairwise (checked above, and by checkExactlyOnce with t valid signatures on every input)
  await checkExactlyOnce(devnet, all);
  for (const id of all) {
    assert.ok(
      (payers.get(id)?.size ?? 0) >= 1,
      `request ${id} is in a finalized payment in the honest members' stores`,
    );
    assert.ok(
      (finalizedByApi.get(id)?.size ?? 0) >= 1,
      `request ${id} shows a finalized payment in the honest members' APIs`,
    );
  }
}

describe('f hostile members against honest member processes', { timeout: 600_000 }, () => {
  it(
    '3-of-4, f = 1: disjoint payments, per-member labellings, wrong amounts and stolen inputs are refused; every request is paid once, exactly',
    { timeout: 240_000 },
    async (ctx) => {
      await hostileRun(ctx, 4, 3);
    },
  );

  it('5-of-7, f = 2: the same attacks by two colluding members', { timeout: 300_000 }, async (ctx) => {
    await hostileRun(ctx, 7, 5);
  });
});
