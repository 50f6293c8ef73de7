import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation, federationFile, type Federation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { MAX_STANDARD_TX_WEIGHT, federationInputWeight, weightToVsize } from '../../../src/bitcoin/weight.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { commitmentScript, commitsTo } from '../../../src/wallet/commitment.js';
import { feeFor } from '../../../src/wallet/fee.js';
import {
  buildSweeps,
  buildTestMerge,
  buildTestSpend,
  checkHandoffTx,
  DEFAULT_MAX_HANDOFF_FEE,
  makeRotationPlan,
  parseRotationPlan,
  planSide,
  rotationPlanFile,
  isHandoffOf,
  type HandoffTx,
  type RotationPlan,
} from '../../../src/wallet/handoff.js';
import type { SpendableUtxo } from '../../../src/wallet/payment.js';

const key = (i: number): Uint8Array => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i));
const fed = (threshold: number, ids: number[]): Federation =>
  buildFederation({ network: 'regtest', threshold, pubkeys: ids.map(key) });

// 2-of-3 {1,2,3} hands over to 3-of-4 {1,2,4,5}: member 3 replaced, two added
const OLD = fed(2, [1, 2, 3]);
const NEW = fed(3, [1, 2, 4, 5]);
const AT = { activationHeight: 500, evmBoundary: 40 };
const PLAN = makeRotationPlan(OLD, NEW, AT, 'plan');
const BOUNDS = { floor: 1, maxRate: 100, maxFee: DEFAULT_MAX_HANDOFF_FEE };

function utxo(i: number, value: bigint, owner: Federation = OLD): SpendableUtxo {
  const txid = createHash('sha256').update(`utxo${i}`).digest('hex');
  return { txid, vout: i % 3, value, scriptPubKey: owner.scriptPubKey };
}

function check(h: HandoffTx, plan: RotationPlan = PLAN, spender: Federation = OLD) {
  return checkHandoffTx(h.tx, h.prevouts, plan, spender, BOUNDS);
}

describe('rotation plan', () => {
  it('round-trips through its file, and its fingerprint does not depend on the order keys are listed in', () => {
    const file = rotationPlanFile(PLAN);
    const back = parseRotationPlan(JSON.parse(JSON.stringify(file)), 'plan.json');
    assert.equal(back.fingerprint, PLAN.fingerprint);
    assert.equal(back.to.descriptor, NEW.descriptor);
    const reordered = { ...file, to: { ...file.to, pubkeys: [...file.to.pubkeys].reverse() } };
    assert.equal(parseRotationPlan(reordered, 'plan.json').fingerprint, PLAN.fingerprint);
    assert.notEqual(makeRotationPlan(OLD, NEW, { ...AT, activationHeight: 501 }, 'p').fingerprint, PLAN.fingerprint);
    assert.notEqual(makeRotationPlan(OLD, NEW, { ...AT, evmBoundary: 41 }, 'p').fingerprint, PLAN.fingerprint);
    assert.notEqual(makeRotationPlan(OLD, fed(3, [1, 2, 4, 6]), AT, 'p').fingerprint, PLAN.fingerprint);
  });

  const file = rotationPlanFile(PLAN);
  const bad: [string, unknown, RegExp][] = [
    ['another version', { ...file, version: 2 }, /plan\.json: version must be 1, got 2/],
    [
      'another network',
      { ...file, to: { ...file.to, network: 'testnet' } },
      /to\.network is testnet, expected .* regtest/,
    ],
    ['the same federation', { ...file, to: file.from }, /to is the old federation itself/],
    [
      'a new set with f < 0',
      { ...file, to: federationFile(fed(2, [1, 2, 4, 5])) },
      /to\.threshold leaves f < 0: 2-of-4: tolerates NO malicious member/,
    ],
    ['a height of 0', { ...file, activationHeight: 0 }, /activationHeight must be a block height from 1/],
    ['a fractional height', { ...file, activationHeight: 1.5 }, /activationHeight must be a block height/],
    ['no EVM boundary', { ...file, evmBoundary: undefined }, /evmBoundary must be an EVM block number of at least 1/],
    ['a bad key', { ...file, to: { ...file.to, pubkeys: ['zz'] } }, /plan\.json: to: pubkeys\[0\]/],
  ];
  for (const [name, json, message] of bad)
    it(`refuses ${name}, naming the field`, () =>
      assert.throws(
        () => parseRotationPlan(json, 'plan.json'),
        (err: Error & { code?: string }) => {
          assert.match(err.message, message);
          return true;
        },
      ));

  it('tells which side a federation is on, and refuses a federation of neither', () => {
    assert.equal(planSide(PLAN, OLD, 'federation'), 'from');
    assert.equal(planSide(PLAN, NEW, 'federation'), 'to');
    assert.throws(() => planSide(PLAN, fed(2, [1, 2, 4]), 'federation'), /federation: federation bcrt1p\w+ is neither/);
  });
});

describe('sweeps and the test spend', () => {
  it('a sweep sends every economic output to the planned address, pays no request, and passes the check', () => {
    const utxos = [utxo(1, 5_000_000n), utxo(2, 7_000_000n), utxo(3, 200n)];
    const { sweeps, left } = buildSweeps(utxos, 2, PLAN, OLD, DEFAULT_MAX_HANDOFF_FEE);
    assert.deepEqual(left, [{ outpoint: `${utxos[2]!.txid}:${utxos[2]!.vout}`, reason: 'uneconomic' }]);
    assert.equal(sweeps.length, 1);
    const [s] = sweeps as [HandoffTx];
    assert.equal(s.tx.inputs.length, 2);
    assert.equal(s.tx.outputs.length, 2);
    assert.ok(commitsTo(s.tx.outputs[0]!.scriptPubKey, []));
    assert.equal(toHex(s.tx.outputs[1]!.scriptPubKey), toHex(NEW.scriptPubKey));
    assert.equal(s.fee, feeFor(2, s.vsize));
    assert.equal(s.sent + s.fee, 12_000_000n);
    assert.deepEqual(check(s), { ok: true });
  });

  it('splits a large UTXO set into relayable sweeps, each as full as the weight limit allows', () => {
    const utxos = Array.from({ length: 2_000 }, (_, i) => utxo(i, 100_000n));
    const { sweeps, left } = buildSweeps(utxos, 1, PLAN, OLD, 10_000_000n);
    assert.deepEqual(left, []);
    assert.ok(sweeps.length >= 2);
    const perTx = Math.floor(MAX_STANDARD_TX_WEIGHT / federationInputWeight(OLD));
    for (const s of sweeps) {
      assert.ok(s.vsize * 4 <= MAX_STANDARD_TX_WEIGHT);
      assert.deepEqual(checkHandoffTx(s.tx, s.prevouts, PLAN, OLD, { ...BOUNDS, maxFee: 10_000_000n }), { ok: true });
    }
    assert.ok(sweeps[0]!.tx.inputs.length > perTx - 5, `${sweeps[0]!.tx.inputs.length} inputs, about ${perTx} fit`);
    assert.equal(
      sweeps.reduce((n, s) => n + s.tx.inputs.length, 0),
      2_000,
    );
    const spent = new Set(sweeps.flatMap((s) => s.tx.inputs.map((i) => `${i.txid}:${i.vout}`)));
    assert.equal(spent.size, 2_000, 'every output swept once');
  });

  it('the fee cap makes smaller sweeps; an output whose input alone costs more than the cap is left, named', () => {
    const utxos = Array.from({ length: 40 }, (_, i) => utxo(i, 1_000_000n));
    const inputFee = feeFor(50, weightToVsize(federationInputWeight(OLD)));
    const maxFee = inputFee * 10n;
    const { sweeps } = buildSweeps(utxos, 50, PLAN, OLD, maxFee);
    assert.ok(sweeps.length >= 4);
    for (const s of sweeps) assert.ok(s.fee <= maxFee);
    const { sweeps: none, left } = buildSweeps(utxos.slice(0, 1), 50, PLAN, OLD, inputFee);
    assert.deepEqual(none, []);
    assert.equal(left[0]!.reason, 'fee_over_cap');
  });

  it('a test spend sends the amount to the new address and the rest back, from the smallest output that covers it', () => {
    const utxos = [utxo(1, 50_000_000n), utxo(2, 2_000_000n), utxo(3, 20_000n)];
    const t = buildTestSpend(utxos, 100_000n, 2, PLAN)!;
    assert.equal(t.tx.inputs[0]!.txid, utxos[1]!.txid);
    assert.equal(t.tx.outputs.length, 3);
    assert.equal(t.tx.outputs[1]!.value, 100_000n);
    assert.equal(toHex(t.tx.outputs[2]!.scriptPubKey), toHex(OLD.scriptPubKey));
    assert.equal(t.kept, 2_000_000n - 100_000n - t.fee);
    assert.deepEqual(check(t), { ok: true });
    assert.equal(buildTestSpend(utxos.slice(2), 100_000n, 2, PLAN), undefined);
    assert.throws(() => buildTestSpend(utxos, 100n, 2, PLAN), /under the new address's dust limit/);
  });

  it('a merge of rival test spends spends an input of each, so it replaces all of them', () => {
    const x = buildTestSpend([utxo(1, 50_000_000n)], 100_000n, 2, PLAN)!;
    const y = buildTestSpend([utxo(2, 2_000_000n)], 100_000n, 2, PLAN)!;
    const z = buildTestMerge([x.prevouts, y.prevouts], 100_000n, 2, PLAN)!;
    const spent = new Set(z.tx.inputs.map((i) => `${i.txid}:${i.vout}`));
    for (const rival of [x, y]) assert.ok(rival.tx.inputs.some((i) => spent.has(`${i.txid}:${i.vout}`)));
    assert.equal(z.sent, 100_000n);
    assert.equal(z.kept, 52_000_000n - 100_000n - z.fee);
    assert.deepEqual(check(z), { ok: true });
    assert.equal(buildTestMerge([[utxo(3, 1000n)], [utxo(4, 1000n)]], 100_000n, 2, PLAN), undefined);
  });

  it('the new set sweeping the test output back to itself is a handoff it may sign', () => {
    const { sweeps } = buildSweeps([utxo(9, 100_000n, NEW)], 2, PLAN, NEW, DEFAULT_MAX_HANDOFF_FEE);
    assert.deepEqual(check(sweeps[0]!, PLAN, NEW), { ok: true });
  });
});

describe('checkHandoffTx refuses what no honest member signs', () => {
  const [base] = buildSweeps([utxo(1, 5_000_000n), utxo(2, 3_000_000n)], 2, PLAN, OLD, DEFAULT_MAX_HANDOFF_FEE)
    .sweeps as [HandoffTx];
  const withOutputs = (outputs: HandoffTx['tx']['outputs']): HandoffTx => ({ ...base, tx: { ...base.tx, outputs } });
  const attacker = witnessScript(1, new Uint8Array(32).fill(7));
  const cases: [string, () => ReturnType<typeof check>, string, number?][] = [
    [
      'a sweep to an address that is not the planned one',
      () => check(withOutputs([base.tx.outputs[0]!, { value: base.sent, scriptPubKey: attacker }])),
      'unplanned_destination',
      1,
    ],
    [
      'a sweep that also pays an outsider from the change',
      () =>
        check(
          withOutputs([
            base.tx.outputs[0]!,
            { value: base.sent - 100_000n, scriptPubKey: NEW.scriptPubKey },
            { value: 100_000n, scriptPubKey: attacker },
          ]),
        ),
      'unplanned_destination',
      2,
    ],
    [
      'a sweep under another plan (another new set)',
      () => check(base, makeRotationPlan(OLD, fed(3, [1, 2, 4, 6]), AT, 'other')),
      'unplanned_destination',
      1,
    ],
    [
      'an "all back to ourselves" spend, which moves nothing to the new set',
      () => check(withOutputs([base.tx.outputs[0]!, { value: base.sent, scriptPubKey: OLD.scriptPubKey }])),
      'unplanned_destination',
    ],
    [
      'a handoff dressed as a payment (committing to a request)',
      () =>
        check(
          withOutputs([{ value: 0n, scriptPubKey: commitmentScript([`0x${'ab'.repeat(32)}:0`]) }, base.tx.outputs[1]!]),
        ),
      'bad_commitment',
      0,
    ],
    [
      'a fee drained to the miners',
      () => check(withOutputs([base.tx.outputs[0]!, { value: base.sent - 500_000n, scriptPubKey: NEW.scriptPubKey }])),
      'fee_rate_too_high',
    ],
    [
      'a fee over the cap in sats at a rate inside the bounds',
      () => checkHandoffTx(base.tx, base.prevouts, PLAN, OLD, { ...BOUNDS, maxRate: 1_000_000, maxFee: base.fee - 1n }),
      'handoff_fee_too_high',
    ],
    [
      'a fee under the floor',
      () => checkHandoffTx(base.tx, base.prevouts, PLAN, OLD, { ...BOUNDS, floor: 5 }),
      'fee_rate_too_low',
    ],
    [
      'a dust output',
      () =>
        check(
          withOutputs([
            ...base.tx.outputs.slice(0, 1),
            { value: base.sent - 100n, scriptPubKey: NEW.scriptPubKey },
            { value: 100n, scriptPubKey: OLD.scriptPubKey },
          ]),
        ),
      'dust_output',
      2,
    ],
    [
      'an input that is not the spender’s',
      () => check({ ...base, prevouts: [base.prevouts[0]!, { ...base.prevouts[1]!, scriptPubKey: NEW.scriptPubKey }] }),
      'input_not_federation',
    ],
    [
      'a non-RBF sequence',
      () =>
        check({
          ...base,
          tx: { ...base.tx, inputs: base.tx.inputs.map((i) => ({ ...i, sequence: 0xffffffff })) },
        }),
      'bad_sequence',
    ],
  ];
  for (const [name, verdict, reason, output] of cases)
    it(name, () => {
      const v = verdict();
      assert.equal(v.ok, false, JSON.stringify(v));
      if (v.ok) return;
      assert.equal(v.reason, reason, v.detail);
      if (output !== undefined) assert.equal(v.output, output);
    });
});

describe('isHandoffOf: where an output at the new address came from', () => {
  const spend = (federation: Federation, requestIds: string[] = []) => ({
    version: 2,
    locktime: 0,
    inputs: [
      {
        txid: 'aa'.repeat(32),
        vout: 0,
        sequence: 0xfffffffd,
        scriptSig: new Uint8Array(0),
        witness: [
          new Uint8Array(64),
          new Uint8Array(0),
          new Uint8Array(64),
          federation.tapscript,
          federation.controlBlock,
        ],
      },
    ],
    outputs: [
      { value: 0n, scriptPubKey: commitmentScript(requestIds) },
      { value: 1_000_000n, scriptPubKey: NEW.scriptPubKey },
    ],
  });
  const spent = (tx: { inputs: readonly unknown[] }, script = OLD.scriptPubKey) => tx.inputs.map(() => script);
  it('a script-path spend of the old federation is one; of any other federation, or a key-path spend, is not', () => {
    assert.equal(isHandoffOf(spend(OLD), spent(spend(OLD)), OLD), true);
    assert.equal(isHandoffOf(spend(NEW), spent(spend(NEW), NEW.scriptPubKey), OLD), false);
    const keyPath = { ...spend(OLD), inputs: [{ ...spend(OLD).inputs[0]!, witness: [new Uint8Array(64)] }] };
    assert.equal(isHandoffOf(keyPath, spent(keyPath), OLD), false);
    const mixed = { ...spend(OLD), inputs: [...spend(OLD).inputs, ...spend(NEW).inputs] };
    assert.equal(isHandoffOf(mixed, [OLD.scriptPubKey, NEW.scriptPubKey], OLD), false, 'every input');
  });

  it("a witness that shows the old tapscript proves nothing unless the output it spends is the old federation's", () => {
    // an output of an unknown witness version (OP_2 <32 bytes>) is anyone-can-spend under consensus:
    // a stranger spends it with the old set's tapscript and control block as witness, and a miner
    // that takes non-standard transactions mines it. Taken for a handoff, the coin it sends to the
    // new address was one the new set may spend in place of the test output, and the rotation stalled
    const unknownVersion = Uint8Array.from([0x52, 0x20, ...new Uint8Array(32).fill(7)]);
    assert.equal(isHandoffOf(spend(OLD), spent(spend(OLD), unknownVersion), OLD), false);
    assert.equal(isHandoffOf(spend(OLD), [undefined], OLD), false, 'a spent output the node did not show');
    assert.equal(isHandoffOf(spend(OLD), [], OLD), false, 'one spent script an input');
  });

  it("the old set's payment of a request that names the new address is none", () => {
    // anyone can burn to the new federation's address: the old set pays it like any request, and
    // taken for a handoff's output, the new set spent it to itself in place of the test output, so
    // the proof never came and the sweeps never started
    const request = spend(OLD, [`0x${'cd'.repeat(32)}:0`]);
    assert.equal(isHandoffOf(request, spent(request), OLD), false);
    const noCommitment = { ...spend(OLD), outputs: spend(OLD).outputs.slice(1) };
    assert.equal(isHandoffOf(noCommitment, spent(noCommitment), OLD), false, 'output 0 commits to no request');
  });
});
