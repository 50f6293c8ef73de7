import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import type { Transaction, TxOutput } from '../../../src/bitcoin/tx.js';
import { auditPayment, matchPayment, type AuditRequest } from '../../../src/wallet/audit.js';
import { commitmentScript } from '../../../src/wallet/commitment.js';
import { buildPayments, type Payment, type PaymentRequest } from '../../../src/wallet/payment.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i))),
});

const digest = (label: string): Buffer => createHash('sha256').update(label).digest();
const id = (label: string, ordinal = 0): string => `0x${digest(label).toString('hex')}:${ordinal}`;
const p2wpkh = (label: string): Uint8Array => witnessScript(0, digest(label).subarray(0, 20));

function request(label: string, sats: bigint, dest = label): PaymentRequest {
  return { id: id(label), scriptPubKey: p2wpkh(dest), sats };
}

/** A payment of `requests` from one federation output of `funds` sats at 2 sat/vB. */
function pay(requests: readonly PaymentRequest[], funds: bigint): Payment {
  const utxo = {
    txid: digest(`funds ${funds}`).toString('hex'),
    vout: 0,
    value: funds,
    scriptPubKey: federation.scriptPubKey,
  };
  const plan = buildPayments(requests, [utxo], 2, federation, { maxOutputs: 50 });
  assert.equal(plan.deferred.length, 0, JSON.stringify(plan.deferred));
  return plan.payments[0]!;
}

function withOutput(tx: Transaction, index: number, change: (o: TxOutput) => TxOutput): Transaction {
  return { ...tx, outputs: tx.outputs.map((o, i) => (i === index ? change(o) : o)) };
}

const REQUESTS = [
  request('alice', 1_500_000n),
  request('bob', 2_000_000n),
  request('carol', 1_000_000n),
  request('dave', 3_000_000n),
];
const payment = pay(REQUESTS, 20_000_000n);
const inOrder = (p: Payment): PaymentRequest[] => p.requestIds.map((rid) => REQUESTS.find((r) => r.id === rid)!);
const full = { federation, prevouts: payment.prevouts };

describe('matchPayment: the requests a payment commits to, from the transaction and candidates alone', () => {
  it('finds the paid requests in output order among decoys, with the one share they bear', () => {
    const decoys = [
      request('erin', 1_500_000n),
      request('frank', 1_000_000n, 'carol'),
      { ...request('gina', 2_000_000n), notPayable: 'rejected' },
    ];
    const candidates = [...decoys, ...REQUESTS].reverse();
    const match = matchPayment(payment.tx, candidates);
    assert.ok(match);
    assert.deepEqual(
      match.requests.map((r) => r.id),
      payment.requestIds,
    );
    assert.equal(match.share, payment.feeShare);
  });

  it('tells apart requests alike in address and amount by the hash, within a bounded search', () => {
    // three requests for the same address and amount; the payment pays the first and the third
    const alike = ['x1', 'x2', 'x3'].map((l) => request(l, 1_200_000n, 'same'));
    const sorted = [...alike].sort((a, b) => (a.id < b.id ? -1 : 1));
    const paid = pay([sorted[0]!, sorted[2]!], 10_000_000n);
    const match = matchPayment(paid.tx, alike);
    assert.deepEqual(
      match?.requests.map((r) => r.id),
      paid.requestIds,
    );
    // id order first (sorted[0], sorted[1]) is not it: one hashed assignment is not enough
    assert.equal(matchPayment(paid.tx, alike, 1), undefined);
    assert.ok(matchPayment(paid.tx, alike, 2));
  });

  it('finds nothing when a paid request is missing, a payout is off by a satoshi, or output 0 is no commitment', () => {
    assert.equal(matchPayment(payment.tx, REQUESTS.slice(1)), undefined);
    assert.equal(
      matchPayment(
        withOutput(payment.tx, 2, (o) => ({ ...o, value: o.value - 1n })),
        REQUESTS,
      ),
      undefined,
    );
    assert.equal(
      matchPayment(
        withOutput(payment.tx, 0, (o) => ({ ...o, scriptPubKey: Uint8Array.of(0x6a) })),
        REQUESTS,
      ),
      undefined,
    );
    assert.equal(matchPayment(payment.tx, []), undefined);
  });
});

describe('auditPayment: every output checked against the rules', () => {
  it('passes a payment built by the proposer: commitment, payouts, change and fee all exact', () => {
    const audit = auditPayment(payment.tx, inOrder(payment), full);
    assert.deepEqual(audit.faults, []);
    assert.ok(audit.commitment.matches);
    assert.equal(audit.share, payment.feeShare);
    assert.ok(audit.payouts.every((p) => p.exact && p.share === payment.feeShare));
    assert.equal(audit.change.output, REQUESTS.length + 1);
    assert.equal(audit.change.value, 20_000_000n - 7_500_000n);
    assert.equal(audit.change.expected, audit.change.value);
    assert.equal(audit.fee, payment.fee);
    assert.equal(
      audit.fee,
      BigInt(REQUESTS.length) * payment.feeShare,
      'with change, the miners get exactly k × share',
    );
    assert.equal(audit.vsize, payment.vsize, 'an unsigned payment is sized as signed by t members');
  });

  it('without input values or federation, checks the commitment and payouts and says the change is unchecked', () => {
    const audit = auditPayment(payment.tx, inOrder(payment));
    assert.deepEqual(audit.faults, []);
    assert.equal(audit.change.checked, false);
    assert.equal(audit.change.value, 12_500_000n);
    assert.equal(audit.fee, undefined);
    assert.equal(audit.vsize, undefined);
  });

  it('with the federation and without input values, still refuses a change output paying anyone else', () => {
    // its value cannot be checked without what the inputs hold, but whose it is needs only the federation
    const outsider = witnessScript(1, new Uint8Array(32).fill(9));
    const changeAt = payment.tx.outputs.length - 1;
    const stolen: Transaction = {
      ...payment.tx,
      outputs: payment.tx.outputs.map((o, i) => (i === changeAt ? { ...o, scriptPubKey: outsider } : o)),
    };
    const audit = auditPayment(stolen, inOrder(payment), { federation });
    assert.deepEqual(
      audit.faults.map((f) => [f.code, f.output]),
      [['change_inexact', changeAt]],
    );
    assert.match(audit.faults[0]!.message, /pays script 5120(09){32}, not the federation's/);
  });

  it('passes a changeless payment whose remainder is under the change dust limit', () => {
    const funds = REQUESTS.reduce((a, r) => a + r.sats, 0n) + 100n;
    const changeless = pay(REQUESTS, funds);
    assert.equal(changeless.tx.outputs.length, REQUESTS.length + 1);
    const audit = auditPayment(changeless.tx, inOrder(changeless), { federation, prevouts: changeless.prevouts });
    assert.deepEqual(audit.faults, []);
    assert.equal(audit.change.output, undefined);
    assert.equal(audit.fee, BigInt(REQUESTS.length) * changeless.feeShare + 100n);
    // a change of those 100 sats would be dust: the audit refuses it
    const dusty = {
      ...changeless.tx,
      outputs: [...changeless.tx.outputs, { value: 100n, scriptPubKey: federation.scriptPubKey }],
    };
    const bad = auditPayment(dusty, inOrder(changeless), { federation, prevouts: changeless.prevouts });
    assert.deepEqual(
      bad.faults.map((f) => f.code),
      ['change_inexact'],
    );
    assert.match(bad.faults[0]!.message, /= 100 is under the change dust limit of 330: there is no change/);
  });

  const k = REQUESTS.length;
  const faulty: [
    string,
    () => { tx: Transaction; requests?: AuditRequest[]; context?: Parameters<typeof auditPayment>[2] },
    string,
    RegExp,
    number?,
  ][] = [
    [
      'a payout one satoshi short',
      () => ({ tx: withOutput(payment.tx, 2, (o) => ({ ...o, value: o.value - 1n })) }),
      'payout_inexact',
      /^output 2 pays \d+ sats for request 0x[0-9a-f]{64}:0 of \d+: a fee share of \d+, expected the \d+ the other outputs bear$/,
      2,
    ],
    [
      'a payout to another address',
      () => ({ tx: withOutput(payment.tx, 3, (o) => ({ ...o, scriptPubKey: p2wpkh('mallory') })) }),
      'payout_inexact',
      /^output 3 pays script 0014[0-9a-f]{40}, not request .*'s script 0014/,
      3,
    ],
    [
      'outputs paid in another order than committed',
      () => {
        // each output still pays its request exactly, but not in the order output 0 names
        const [c, o1, o2, ...rest] = payment.tx.outputs;
        const [r1, r2, ...others] = inOrder(payment);
        return { tx: { ...payment.tx, outputs: [c!, o2!, o1!, ...rest] }, requests: [r2!, r1!, ...others] };
      },
      'commitment_mismatch',
      /^output 0 commits to [0-9a-f]{64}, but the 4 request\(s\) in output order hash to [0-9a-f]{64}$/,
      0,
    ],
    [
      'no commitment',
      () => ({ tx: withOutput(payment.tx, 0, (o) => ({ ...o, scriptPubKey: Uint8Array.of(0x6a, 0x01, 0x00) })) }),
      'no_commitment',
      /^output 0 is not OP_RETURN <32 bytes> \(script 6a0100\)$/,
      0,
    ],
    [
      'value on the commitment',
      () => ({ tx: withOutput(payment.tx, 0, (o) => ({ ...o, value: 1000n })) }),
      'bad_layout',
      /output 0 \(the commitment\) carries 1000 sats, expected 0/,
      0,
    ],
    [
      'a request the federation rejects',
      () => ({
        tx: payment.tx,
        requests: inOrder(payment).map((r, i) => (i === 1 ? { ...r, notPayable: 'rejected (wrong_network)' } : r)),
      }),
      'request_not_payable',
      /^output 2: request .* must not be paid: rejected \(wrong_network\)$/,
      2,
    ],
    [
      'a request paid twice',
      () => {
        const twice = [REQUESTS[0]!, REQUESTS[0]!];
        const outputs = [
          { value: 0n, scriptPubKey: commitmentScript(twice.map((r) => r.id)) },
          { value: 1_499_000n, scriptPubKey: REQUESTS[0]!.scriptPubKey },
          { value: 1_499_000n, scriptPubKey: REQUESTS[0]!.scriptPubKey },
        ];
        return { tx: { ...payment.tx, outputs }, requests: twice, context: {} };
      },
      'duplicate_request',
      /^request .* is paid by output 1 and again by output 2$/,
      2,
    ],
    [
      'change one satoshi short',
      () => ({ tx: withOutput(payment.tx, k + 1, (o) => ({ ...o, value: o.value - 1n })) }),
      'change_inexact',
      /^output 5 \(change\) pays 12499999 sats, expected exactly 12500000 \(Σ inputs 20000000 − Σ requested 7500000\)$/,
      k + 1,
    ],
    [
      'change to another script',
      () => ({ tx: withOutput(payment.tx, k + 1, (o) => ({ ...o, scriptPubKey: p2wpkh('mallory') })) }),
      'change_inexact',
      /^output 5 \(change\) pays script 0014.*, not the federation's 5120/,
      k + 1,
    ],
    [
      'change missing',
      () => ({ tx: { ...payment.tx, outputs: payment.tx.outputs.slice(0, k + 1) } }),
      'change_inexact',
      /^the change of 12500000 sats \(Σ inputs 20000000 − Σ requested 7500000\) to the federation is missing$/,
      k + 1,
    ],
    [
      'an output after the change',
      () => ({ tx: { ...payment.tx, outputs: [...payment.tx.outputs, { value: 1000n, scriptPubKey: p2wpkh('x') }] } }),
      'bad_layout',
      /^1 output\(s\) after the change/,
      k + 2,
    ],
    ['version 1', () => ({ tx: { ...payment.tx, version: 1 } }), 'bad_layout', /^version is 1, expected 2$/],
    [
      'a final sequence',
      () => ({ tx: { ...payment.tx, inputs: payment.tx.inputs.map((i) => ({ ...i, sequence: 0xffffffff })) } }),
      'bad_layout',
      /^input 0 has sequence 0xffffffff, expected 0xfffffffd$/,
    ],
    [
      "an input that is not the federation's",
      () => ({
        tx: payment.tx,
        context: { federation, prevouts: payment.prevouts.map((p) => ({ ...p, scriptPubKey: p2wpkh('elsewhere') })) },
      }),
      'input_not_federation',
      /^input 0 spends 20000000 sats from script 0014.*, not the federation's 5120/,
    ],
    [
      'inputs short of what was requested',
      () => ({
        tx: payment.tx,
        context: { federation, prevouts: payment.prevouts.map((p) => ({ ...p, value: 7_000_000n })) },
      }),
      'change_inexact',
      /^the inputs hold 7000000 sats, less than the 7500000 requested: the peg-outs' shares pay 500000 sats that are no fee$/,
    ],
  ];
  for (const [name, make, code, message, output] of faulty) {
    it(`names ${name}: ${code}`, () => {
      const made = make();
      const { tx, context = full } = made;
      const requests: AuditRequest[] = made.requests ?? inOrder(payment);
      const audit = auditPayment(tx, requests, context);
      assert.equal(audit.faults.length, 1, JSON.stringify(audit.faults));
      const [fault] = audit.faults;
      assert.equal(fault!.code, code);
      assert.match(fault!.message, message);
      if (output !== undefined) assert.equal(fault!.output, output);
      // a payout fault marks that output only: the share is the one most outputs bear
      assert.deepEqual(
        audit.payouts.filter((p) => !p.exact).map((p) => p.output),
        output !== undefined && output >= 1 && output <= requests.length ? [output] : [],
      );
    });
  }
});
