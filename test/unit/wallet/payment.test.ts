import { DEFAULT_LIMITS } from '../../../src/wallet/limits.js';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { dustThreshold, p2pkhScript, witnessScript } from '../../../src/bitcoin/script.js';
import {
  signedFederationVsize,
  federationInputWeight,
  weightToVsize,
  federationSpendWeight,
} from '../../../src/bitcoin/weight.js';
import { selectCoins } from '../../../src/wallet/coinselect.js';
import { commitsTo } from '../../../src/wallet/commitment.js';
import { DEFAULT_MAX_FEE_MULTIPLE, feeFor, feeShare } from '../../../src/wallet/fee.js';
import { checkProposal, proposalFromPayment } from '../../../src/wallet/proposal.js';
import { validateProposal } from '../../../src/wallet/validate.js';
import {
  buildMerge,
  buildPayments,
  requirePayments,
  type PaymentRequest,
  type SpendableUtxo,
} from '../../../src/wallet/payment.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i))),
});

/** A small deterministic PRNG (mulberry32), so every failure is reproducible from its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytes(label: string, n: number): Uint8Array {
  return new Uint8Array(createHash('sha256').update(label).digest()).slice(0, n);
}

const SCRIPTS = [
  (i: number) => p2pkhScript(bytes(`pkh${i}`, 20)),
  (i: number) => witnessScript(0, bytes(`wpkh${i}`, 20)),
  (i: number) => witnessScript(0, bytes(`wsh${i}`, 32)),
  (i: number) => witnessScript(1, bytes(`tr${i}`, 32)),
];

function randomCase(seed: number): {
  requests: PaymentRequest[];
  utxos: SpendableUtxo[];
  rate: number;
  maxOutputs: number;
} {
  const r = prng(seed);
  const requests = Array.from({ length: 1 + Math.floor(r() * 40) }, (_, i) => ({
    id: `0x${toHex(bytes(`req${seed}-${i}`, 32))}:${i}`,
    scriptPubKey: SCRIPTS[Math.floor(r() * SCRIPTS.length)]!(seed * 100 + i),
    // mostly real amounts, some close to the minimum and dust
    sats: r() < 0.1 ? BigInt(400 + Math.floor(r() * 2000)) : BigInt(1_000_000 + Math.floor(r() * 50_000_000)),
  }));
  const utxos = Array.from({ length: 1 + Math.floor(r() * 60) }, (_, i) => ({
    txid: toHex(bytes(`utxo${seed}-${i}`, 32)),
    vout: i % 3,
    value: BigInt(r() < 0.3 ? 500 + Math.floor(r() * 30_000) : 1_000_000 + Math.floor(r() * 200_000_000)),
    scriptPubKey: federation.scriptPubKey,
  }));
  return {
    requests,
    utxos,
    rate: [1, 1.5, 2, 7.25, 25, 120][Math.floor(r() * 6)]!,
    maxOutputs: 3 + Math.floor(r() * 30),
  };
}

describe('payment building properties over random UTXO and request sets', () => {
  const inputCost = (rate: number): bigint => feeFor(rate, weightToVsize(federationInputWeight(federation)));

  it('holds for 1,500 seeded cases', () => {
    let payments = 0;
    for (let seed = 1; seed <= 1500; seed++) {
      const c = randomCase(seed);
      const plan = buildPayments(c.requests, c.utxos, c.rate, federation, { maxOutputs: c.maxOutputs });
      const again = buildPayments(c.requests, c.utxos, c.rate, federation, { maxOutputs: c.maxOutputs });
      assert.deepEqual(again, plan, `seed ${seed}: deterministic`);
      const byId = new Map(c.requests.map((q) => [q.id, q]));
      const accounted = new Set<string>();
      const spent = new Set<string>();
      for (const p of plan.payments) {
        payments++;
        const ins = p.prevouts.reduce((a, u) => a + u.value, 0n);
        const outs = p.tx.outputs.reduce((a, o) => a + o.value, 0n);
        assert.equal(ins, outs + p.fee, `seed ${seed}: inputs = outputs + fee`);
        const vsize = signedFederationVsize(federation, p.tx);
        assert.equal(p.vsize, vsize);
        const target = feeFor(c.rate, vsize);
        assert.ok(p.fee >= target, `seed ${seed}: fee ${p.fee} ≥ rate × signed vsize ${target}`);
        // above the target only by the ceil-division surplus (< 1 sat per output) plus either
        // a branch-and-bound excess (< the cost of a change output) or change too small to keep
        const k = BigInt(p.requestIds.length);
        const slack = p.fee - target - (k * p.feeShare - target);
        assert.ok(
          slack <
            (p.change === 0n
              ? inputCost(c.rate) > dustThreshold(federation.scriptPubKey)
                ? inputCost(c.rate)
                : dustThreshold(federation.scriptPubKey)
              : 1n),
          `seed ${seed}: fee slack ${slack}`,
        );
        assert.ok(p.tx.outputs.length <= c.maxOutputs, `seed ${seed}: output cap`);
        assert.ok(
          federationSpendWeight(
            federation,
            p.tx.inputs.length,
            p.tx.outputs.map((o) => o.scriptPubKey),
          ) <= 400_000,
        );
        const changes = p.tx.outputs.filter((o) => toHex(o.scriptPubKey) === toHex(federation.scriptPubKey));
        assert.ok(changes.length <= 1, `seed ${seed}: at most one change output`);
        if (changes.length === 1)
          assert.equal(toHex(p.tx.outputs.at(-1)!.scriptPubKey), toHex(federation.scriptPubKey), 'change is last');
        assert.ok(
          commitsTo(p.tx.outputs[0]!.scriptPubKey, p.requestIds),
          `seed ${seed}: output 0 commits to the requests paid`,
        );
        assert.equal(p.tx.outputs[0]!.value, 0n);
        p.tx.outputs.slice(1).forEach((o, i) => {
          assert.ok(o.value >= dustThreshold(o.scriptPubKey), `seed ${seed}: output ${i + 1} not dust`);
          const id = p.requestIds[i];
          if (id !== undefined) {
            assert.equal(toHex(o.scriptPubKey), toHex(byId.get(id)!.scriptPubKey));
            assert.equal(o.value, byId.get(id)!.sats - p.feeShare);
          }
        });
        const burned = p.requestIds.reduce((a, id) => a + byId.get(id)!.sats, 0n);
        if (changes.length === 1)
          assert.equal(changes[0]!.value, ins - burned, `seed ${seed}: change is exactly Σ inputs − Σ sats`);
        else
          assert.ok(
            ins - burned < dustThreshold(federation.scriptPubKey),
            `seed ${seed}: no change only for a remainder under its dust limit`,
          );
        // the proposer builds exactly what a validator with the same view accepts
        const verdict = validateProposal(checkProposal(proposalFromPayment(p, 1, toHex(federation.pubkeys[0]!))), {
          federation,
          sender: toHex(federation.pubkeys[0]!),
          request: (id) =>
            byId.has(id)
              ? { status: 'accepted', scriptPubKey: byId.get(id)!.scriptPubKey, sats: byId.get(id)!.sats, counts: true }
              : undefined,
          utxo: (name) =>
            c.utxos
              .map((u) => ({ ...u, height: 1, state: 'unspent' as const }))
              .find((u) => `${u.txid}:${u.vout}` === name),
          signedPayments: () => [],
          holder: () => undefined,
          ancestors: [],
          fee: {
            floor: c.rate,
            estimate: c.rate,
            maxMultiple: DEFAULT_MAX_FEE_MULTIPLE,
            maxRate: 1_000_000,
            maxSharePerRequest: 10n ** 15n,
          },
          chain: null,
          limits: DEFAULT_LIMITS,
          released: () => false,
          outflow: { window: 0, used: 0n },
        });
        assert.deepEqual(verdict, { ok: true }, `seed ${seed}: the validator accepts the proposer's payment`);
        assert.deepEqual([...p.requestIds], [...p.requestIds].sort(), 'peg-outs in request id order');
        for (const input of p.tx.inputs) {
          assert.equal(input.sequence, 0xfffffffd);
          const name = `${input.txid}:${input.vout}`;
          assert.ok(!spent.has(name), `seed ${seed}: inputs disjoint across payments`);
          spent.add(name);
        }
        assert.equal(p.tx.version, 2);
        assert.equal(p.tx.locktime, 0);
        for (const id of p.requestIds) accounted.add(id);
      }
      for (const d of plan.deferred) {
        assert.ok(!accounted.has(d.id), `seed ${seed}: a deferred request is not also paid`);
        accounted.add(d.id);
      }
      assert.equal(accounted.size, c.requests.length, `seed ${seed}: every request paid or deferred, none lost`);
    }
    assert.ok(payments > 1000, `enough cases produced payments (${payments})`);
  });
});

describe('payment building cases', () => {
  const utxo = (i: number, value: bigint): SpendableUtxo => ({
    txid: toHex(bytes(`u${i}`, 32)),
    vout: 0,
    value,
    scriptPubKey: federation.scriptPubKey,
  });
  const rid = (i: number): string => `0x${String(i).padStart(64, '0')}:0`;
  const request = (i: number, sats: bigint): PaymentRequest => ({ id: rid(i), scriptPubKey: SCRIPTS[1]!(i), sats });

  it('finds a changeless branch-and-bound match when one exists', () => {
    const utxos = [utxo(1, 3_000_000n), utxo(2, 2_000_000n), utxo(3, 7_000_000n), utxo(4, 1_000_100n)];
    const sel = selectCoins(utxos, 3_000_000n, 2, 100, 100n);
    assert.equal(sel?.method, 'bnb');
    assert.deepEqual(sel?.coins.map((c) => c.value).sort(), [3_000_000n]);
    const two = selectCoins(utxos, 4_000_050n, 2, 100, 100n);
    assert.equal(two?.method, 'bnb');
    assert.equal(two?.total, 4_000_100n);
  });

  it('takes the least-waste selection, as an exhaustive search does (random small wallets)', () => {
    let seed = 7;
    const next = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    let matched = 0;
    for (let round = 0; round < 300; round++) {
      const coins = Array.from({ length: 1 + next(10) }, (_, i) => utxo(i, BigInt(1_000_000 + next(50) * 100_000)));
      const target = BigInt(1_000_000 + next(200) * 100_000);
      const costOfChange = BigInt(next(3) * 100_000);
      // waste: an input's fee (2 sat/vB × 100 vB) each, and the excess of a changeless set or, with
      // change, the change output and the input that spends it later
      const inputCost = 200n;
      let least: bigint | null = null;
      for (let mask = 1; mask < 1 << coins.length; mask++) {
        const chosen = coins.filter((_, i) => mask & (1 << i));
        const sum = chosen.reduce((a, c) => a + c.value, 0n);
        const waste = sum - target + BigInt(chosen.length) * inputCost;
        if (sum >= target && sum <= target + costOfChange && (least === null || waste < least)) least = waste;
      }
      let covered = 0n;
      let largestFirst = 0;
      for (const c of [...coins].sort((a, b) => (b.value > a.value ? 1 : b.value < a.value ? -1 : 0))) {
        if (covered >= target) break;
        covered += c.value;
        largestFirst++;
      }
      const withChange = BigInt(largestFirst + 1) * inputCost + costOfChange;
      const sel = selectCoins(coins, target, 2, 100, costOfChange);
      if (least === null || least > withChange) {
        assert.notEqual(sel?.method, 'bnb', `round ${round}: no changeless set wastes less than change`);
      } else {
        matched++;
        assert.equal(sel?.method, 'bnb', `round ${round}`);
        const waste = sel!.total - target + BigInt(sel!.coins.length) * inputCost;
        assert.equal(waste, least, `round ${round}: least waste`);
      }
    }
    assert.ok(matched > 50, `enough rounds had a changeless match (${matched})`);
  });

  it('does not pad a payment with dust to avoid change: anyone can send the federation thousands of small outputs', () => {
    let seed = 11;
    const next = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const coins = [
      ...Array.from({ length: 40 }, (_, i) => utxo(i, BigInt(1_000_000 + next(200_000_000)))),
      ...Array.from({ length: 20_000 }, (_, i) => utxo(1000 + i, BigInt(330 + next(370)))),
    ];
    for (const sats of [1_234_567n, 5_000_000n, 33_333_333n]) {
      const plan = buildPayments([request(1, sats)], coins, 2, federation, { maxOutputs: 10 });
      const [p] = requirePayments(plan, 1);
      assert.ok(p!.tx.inputs.length <= 3, `${sats} sats paid with ${p!.tx.inputs.length} inputs`);
    }
    const ten = buildPayments(
      Array.from({ length: 10 }, (_, i) => request(i, BigInt(100_000 + next(5_000_000)))),
      coins,
      2,
      federation,
      { maxOutputs: 20 },
    );
    const [p] = requirePayments(ten, 1);
    assert.ok(p!.tx.inputs.length <= 5, `ten requests paid with ${p!.tx.inputs.length} inputs`);
  });

  it('does not search a wallet whose coins add up past 2^53 sats: largest first', () => {
    const sel = selectCoins([utxo(1, 2n ** 53n), utxo(2, 3_000_000n)], 3_000_000n, 2, 100, 100n);
    assert.equal(sel?.method, 'largest-first');
    assert.equal(sel?.total, 2n ** 53n);
  });

  it('falls back to largest-first with change when no match exists', () => {
    const plan = buildPayments([request(1, 2_500_000n)], [utxo(1, 10_000_000n), utxo(2, 9_000_000n)], 2, federation, {
      maxOutputs: 10,
    });
    const [p] = requirePayments(plan, 1);
    assert.equal(p!.selection, 'largest-first');
    assert.equal(p!.tx.inputs.length, 1);
    assert.equal(p!.change, 7_500_000n);
  });

  it('defers a request that would be dust after its fee share, and says all_dust when nothing is left', () => {
    const plan = buildPayments([request(1, 5_000_000n), request(2, 400n)], [utxo(1, 100_000_000n)], 5, federation, {
      maxOutputs: 10,
    });
    assert.deepEqual(plan.deferred, [{ id: rid(2), reason: 'dust_after_fee' }]);
    assert.deepEqual(plan.payments[0]!.requestIds, [rid(1)]);
    const dust = buildPayments([request(2, 400n)], [utxo(1, 100_000_000n)], 5, federation, { maxOutputs: 10 });
    assert.throws(() => requirePayments(dust, 1), { code: 'all_dust' });
  });

  it('says insufficient_funds, and funds what it can', () => {
    const plan = buildPayments(
      [request(1, 5_000_000n), request(2, 50_000_000n)],
      [utxo(1, 6_000_000n)],
      2,
      federation,
      { maxOutputs: 10 },
    );
    assert.deepEqual(plan.deferred, [{ id: rid(2), reason: 'insufficient_funds' }]);
    assert.equal(plan.payments.length, 1);
    assert.throws(
      () => requirePayments(buildPayments([request(1, 5_000_000n)], [], 2, federation, { maxOutputs: 10 }), 1),
      { code: 'insufficient_funds' },
    );
    assert.throws(() => requirePayments(buildPayments([], [utxo(1, 1n)], 2, federation, { maxOutputs: 10 }), 0), {
      code: 'no_requests',
    });
  });

  it('splits by the output cap and by the weight limit into transactions with disjoint inputs', () => {
    const requests = Array.from({ length: 25 }, (_, i) => request(i, 1_000_000n + BigInt(i)));
    const utxos = Array.from({ length: 30 }, (_, i) => utxo(i, 3_000_000n));
    const capped = buildPayments(requests, utxos, 2, federation, { maxOutputs: 10 });
    assert.deepEqual(
      capped.payments.map((p) => p.requestIds.length),
      [8, 8, 8, 1],
    ); // 10 outputs: the commitment, 8 peg-outs, the change
    const light = buildPayments(requests, utxos, 2, federation, { maxOutputs: 100, maxWeight: 3_000 });
    assert.ok(light.payments.length > 1);
    for (const p of light.payments)
      assert.ok(
        federationSpendWeight(
          federation,
          p.tx.inputs.length,
          p.tx.outputs.map((o) => o.scriptPubKey),
        ) <= 3_000,
      );
    assert.equal(light.payments.reduce((a, p) => a + p.requestIds.length, 0) + light.deferred.length, 25);
  });

  it('merges rival payments into one that spends an input of each, adding inputs only as the requests need them', () => {
    const requests = [request(1, 3_000_000n), request(2, 3_000_000n), request(3, 1_500_000n)];
    const first = [utxo(1, 2_000_000n), utxo(2, 4_000_000n), utxo(3, 1_000_000n)];
    const second = [utxo(4, 3_000_000n), utxo(5, 2_500_000n)];
    const merged = buildMerge(requests, [first, second], 2, federation)!;
    const spends = new Set(merged.tx.inputs.map((i) => i.txid));
    assert.ok(
      first.some((u) => spends.has(u.txid)) && second.some((u) => spends.has(u.txid)),
      'conflicts with both rivals',
    );
    // the largest of each (4M + 3M) falls short of 7.5M; the next largest (2.5M) covers it
    assert.deepEqual([...spends].sort(), [utxo(2, 0n), utxo(4, 0n), utxo(5, 0n)].map((u) => u.txid).sort());
    assert.deepEqual(merged.requestIds, [rid(1), rid(2), rid(3)]);
    assert.equal(
      buildMerge(requests, [first, []], 2, federation),
      undefined,
      'a rival without inputs cannot be conflicted with',
    );
    assert.equal(
      buildMerge([request(4, 20_000_000n)], [first, second], 2, federation),
      undefined,
      'the rivals cannot fund it',
    );
  });

  it('splits the fee in equal ceil shares', () => {
    assert.equal(feeShare(10n, 3), 4n);
    assert.equal(feeShare(9n, 3), 3n);
    assert.equal(feeFor(1.5, 101), 152n);
    assert.throws(() => buildPayments([], [], 0, federation, { maxOutputs: 10 }), { code: 'invalid_fee_rate' });
  });
});
