import { DEFAULT_LIMITS, type OutflowLimits } from '../../../src/wallet/limits.js';
import { decodeFrame, encodeFrame } from '../../../src/p2p/frames.js';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { parseTx, serializeTx, txid as txidOf, type Transaction } from '../../../src/bitcoin/tx.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { proposalKey } from '../../../src/storage/keys.js';
import {
  buildPayments,
  buildReplacement,
  paymentOutputs,
  requirePayments,
  unsignedSpend,
  type PaymentRequest,
} from '../../../src/wallet/payment.js';
import { signedFederationVsize } from '../../../src/bitcoin/weight.js';
import { feeFor, feeShare, type FeePolicy } from '../../../src/wallet/fee.js';
import {
  checkProposal,
  proposalFromPayment,
  proposalTxid,
  stageProposal,
  type CheckedProposal,
} from '../../../src/wallet/proposal.js';
import { getUtxo, registerUtxo, type ChainView } from '../../../src/wallet/utxos.js';
import {
  validateProposal,
  type KnownRequest,
  type RejectReason,
  type SignedPayment,
  type ValidationState,
} from '../../../src/wallet/validate.js';
import { openTempStore } from '../../support/tempdir.js';
import type { Proposal, UtxoRecord } from '../../../src/storage/records.js';

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i))),
});
/** Whose link brought the proposals these tests check. */
const PROPOSER = toHex(federation.pubkeys[0]!);
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');

const utxos: UtxoRecord[] = [1, 2, 3].map((i) => ({
  txid: hex32(i),
  vout: 0,
  value: 10_000_000n,
  scriptPubKey: federation.scriptPubKey,
  height: 100 + i,
  state: 'unspent',
}));
const requests: PaymentRequest[] = [1, 2].map((i) => ({
  id: `0x${hex32(i)}:${i}`,
  scriptPubKey: witnessScript(0, new Uint8Array(20).fill(i)),
  sats: 4_000_000n,
}));
const POLICY: FeePolicy = { floor: 1, estimate: 2, maxMultiple: 3, maxRate: 500, maxSharePerRequest: 100_000n };

/** The proposal as the edge would hand it on, without the edge's own checks (the validator's are tested here). */
function asChecked(p: Proposal): CheckedProposal {
  const tx = parseTx(p.unsignedTx);
  return { proposal: p, tx, txid: txidOf(tx) };
}

function baseProposal(): Proposal {
  const [payment] = requirePayments(buildPayments(requests, utxos, 2, federation, { maxOutputs: 10 }), 2);
  return proposalFromPayment(payment!, 1, toHex(federation.pubkeys[0]!));
}

interface Overrides {
  requests?: Map<string, KnownRequest>;
  utxos?: Map<string, UtxoRecord>;
  signed?: Map<string, SignedPayment[]>;
  fee?: Partial<FeePolicy>;
  holders?: Map<string, string[]>;
  chain?: ChainView;
  limits?: Partial<OutflowLimits>;
  released?: ReadonlySet<string>;
  used?: bigint;
}

function state(o: Overrides = {}): ValidationState {
  const reqs =
    o.requests ??
    new Map(
      requests.map((r) => [r.id, { status: 'accepted', scriptPubKey: r.scriptPubKey, sats: r.sats, counts: true }]),
    );
  const us = o.utxos ?? new Map(utxos.map((u) => [`${u.txid}:${u.vout}`, u]));
  return {
    federation,
    sender: PROPOSER,
    request: (id) => reqs.get(id),
    utxo: (name) => us.get(name),
    signedPayments: (id) => o.signed?.get(id) ?? [],
    holder: (txid) => o.holders?.get(txid),
    ancestors: [],
    fee: { ...POLICY, ...o.fee },
    chain: o.chain ?? null,
    limits: { ...DEFAULT_LIMITS, ...o.limits },
    released: (id) => o.released?.has(id) ?? false,
    outflow: { window: 7, used: o.used ?? 0n },
  };
}

/** A payment this member signed earlier: 100 vB at `rate` sat/vB. */
function earlier(txid: string, inputs: string[], rate = 1, dead = false, finalized = true): SignedPayment {
  return { txid, inputs, fee: BigInt(100 * rate), vsize: 100, dead, finalized };
}

/** The base proposal with its transaction changed by `edit`. */
function withTx(edit: (tx: Transaction) => Transaction, p = baseProposal()): Proposal {
  return { ...p, unsignedTx: serializeTx(edit(parseTx(p.unsignedTx))) };
}

describe('proposal validation', () => {
  it('accepts a proposal built from its own state', () => {
    assert.deepEqual(validateProposal(asChecked(baseProposal()), state()), { ok: true });
  });

  const base = baseProposal();
  const tx = parseTx(base.unsignedTx);
  const firstInput = `${tx.inputs[0]!.txid}:${tx.inputs[0]!.vout}`;
  const stranger = witnessScript(1, new Uint8Array(32).fill(7));
  const share = requests[0]!.sats - tx.outputs[1]!.value;
  const onOutput = (index: number, edit: (o: Transaction['outputs'][number]) => Transaction['outputs'][number]) =>
    withTx((t) => ({ ...t, outputs: t.outputs.map((o, i) => (i === index ? edit(o) : o)) }));
  const heldBy = (holder: string) =>
    new Map(utxos.map((u) => [`${u.txid}:${u.vout}`, { ...u, state: 'reserved' as const, reservedBy: holder }]));

  const cases: [RejectReason, () => [Proposal, ValidationState]][] = [
    ['bad_version', () => [withTx((t) => ({ ...t, version: 1 })), state()]],
    ['bad_locktime', () => [withTx((t) => ({ ...t, locktime: 800_000 })), state()]],
    [
      'bad_sequence',
      () => [withTx((t) => ({ ...t, inputs: t.inputs.map((i) => ({ ...i, sequence: 0xffffffff })) })), state()],
    ],
    [
      'prevouts_mismatch',
      () => [
        { ...base, prevouts: base.prevouts.map((p, i) => (i === 0 ? { ...p, value: p.value + 1n } : p)) },
        state(),
      ],
    ],
    ['no_payments', () => [{ ...base, requestIds: [] }, state()]],
    ['output_count_mismatch', () => [{ ...base, requestIds: base.requestIds.slice(0, 1) }, state()]],
    [
      'malformed_request_id',
      () => [{ ...base, requestIds: [base.requestIds[0]!.replace(/:(\d+)$/, ':0$1'), base.requestIds[1]!] }, state()],
    ],
    ['duplicate_request', () => [{ ...base, requestIds: [base.requestIds[0]!, base.requestIds[0]!] }, state()]],
    ['unknown_request', () => [base, state({ requests: new Map() })]],
    [
      'request_not_payable',
      () => [
        base,
        state({
          requests: new Map(
            requests.map((r) => [r.id, { status: 'paid', scriptPubKey: r.scriptPubKey, sats: r.sats, counts: false }]),
          ),
        }),
      ],
    ],
    ['bad_commitment', () => [{ ...base, requestIds: [...base.requestIds].reverse() }, state()]],
    [
      'bad_commitment',
      () => [onOutput(0, (o) => ({ ...o, scriptPubKey: Uint8Array.of(0x6a, 0x20, ...new Uint8Array(32)) })), state()],
    ],
    ['wrong_script', () => [onOutput(1, (o) => ({ ...o, scriptPubKey: stranger })), state()]],
    ['wrong_amount', () => [onOutput(1, (o) => ({ ...o, value: 4_000_001n })), state()]],
    ['wrong_amount', () => [onOutput(2, (o) => ({ ...o, value: 1_000n })), state()]],
    [
      'dust_output',
      () => [
        onOutput(1, (o) => ({ ...o, value: 100n })),
        state({
          requests: new Map(
            requests.map((r, i) => [
              r.id,
              { status: 'accepted', scriptPubKey: r.scriptPubKey, sats: i === 0 ? 100n + share : r.sats, counts: true },
            ]),
          ),
        }),
      ],
    ],
    ['bad_change', () => [onOutput(3, (o) => ({ ...o, scriptPubKey: stranger })), state()]],
    ['bad_change', () => [onOutput(3, (o) => ({ ...o, value: o.value - 1_000n })), state()]],
    ['bad_change', () => [withTx((t) => ({ ...t, outputs: t.outputs.slice(0, 3) })), state()]],
    [
      'duplicate_input',
      () => [
        {
          ...withTx((t) => ({ ...t, inputs: [t.inputs[0]!, t.inputs[0]!] })),
          prevouts: [base.prevouts[0]!, base.prevouts[0]!],
        },
        state(),
      ],
    ],
    ['unknown_input', () => [base, state({ utxos: new Map() })]],
    [
      'input_not_federation',
      () => [
        base,
        state({ utxos: new Map(utxos.map((u) => [`${u.txid}:${u.vout}`, { ...u, scriptPubKey: stranger }])) }),
      ],
    ],
    [
      'input_spent',
      () => [
        base,
        state({
          utxos: new Map(utxos.map((u) => [`${u.txid}:${u.vout}`, { ...u, state: 'spent', spentBy: hex32(99) }])),
        }),
      ],
    ],
    ['input_unconfirmed', () => [base, state({ chain: { tipHeight: 103, spendDepth: 6 } })]],
    [
      'input_held',
      () => [base, state({ utxos: heldBy(hex32(55)), holders: new Map([[hex32(55), [`0x${hex32(9)}:0`]]]) })],
    ],
    ['fee_rate_too_low', () => [base, state({ fee: { floor: 50 } })]],
    ['fee_rate_too_high', () => [base, state({ fee: { floor: 0.1, estimate: 0.1 } })]],
    ['fee_rate_too_high', () => [base, state({ fee: { maxRate: 1 } })]],
    ['fee_share_too_high', () => [base, state({ fee: { maxSharePerRequest: share - 1n } })]],
    [
      'double_payment',
      () => [base, state({ signed: new Map([[base.requestIds[0]!, [earlier(hex32(42), [`${hex32(77)}:0`])]]]) })],
    ],
    [
      'replacement_fee_too_low',
      () => [base, state({ signed: new Map([[base.requestIds[0]!, [earlier(hex32(42), [firstInput], 2)]]]) })],
    ],
  ];
  for (const [reason, make] of cases) {
    it(`refuses with ${reason}`, () => {
      const [proposal, s] = make();
      const verdict = validateProposal(asChecked(proposal), s);
      assert.equal(verdict.ok, false);
      if (!verdict.ok) assert.equal(verdict.reason, reason, verdict.detail);
    });
  }

  it('refuses a payment whose inputs do not cover what its requests burned, built by the shared rule', () => {
    // one federation output, worth less than the requests: paymentOutputs leaves out a negative change
    // as it leaves out one under the dust limit, so the outputs match the rule and the shares pass the
    // fee policy, while the transaction spends more than it has (it never confirms, and its requests
    // could only be paid again by a replacement of it, which these inputs cannot fund) or pays no fee
    const proposalFrom = (value: bigint): [Proposal, ValidationState] => {
      const utxo: UtxoRecord = { ...utxos[0]!, value };
      const draft = unsignedSpend([utxo], paymentOutputs(requests, value, 0n, federation));
      const share = feeShare(feeFor(2, signedFederationVsize(federation, draft)), requests.length);
      const outputs = paymentOutputs(requests, value, share, federation);
      const proposal: Proposal = {
        ...base,
        unsignedTx: serializeTx(unsignedSpend([utxo], outputs)),
        prevouts: [{ value, scriptPubKey: federation.scriptPubKey }],
      };
      return [proposal, state({ utxos: new Map([[`${utxo.txid}:${utxo.vout}`, utxo]]) })];
    };
    const burned = requests.reduce((a, r) => a + r.sats, 0n);
    const zeroFee = burned - 2n * (requests[0]!.sats - parseTx(proposalFrom(burned)[0].unsignedTx).outputs[1]!.value);
    for (const value of [burned - 3_000_000n, zeroFee, burned - 1n]) {
      const verdict = validateProposal(asChecked(proposalFrom(value)[0]), proposalFrom(value)[1]);
      assert.equal(verdict.ok, false, `signed a payment of ${burned} sats of requests from ${value} sats of inputs`);
      if (!verdict.ok) assert.equal(verdict.reason, 'bad_change', verdict.detail);
    }
    // exactly enough: no change, and the shares are the whole fee
    assert.deepEqual(validateProposal(asChecked(proposalFrom(burned)[0]), proposalFrom(burned)[1]), { ok: true });
  });

  it('spends inputs held by a live payment only when it pays every request of that payment', () => {
    const holders = new Map([[hex32(55), [requests[1]!.id]]]);
    assert.deepEqual(validateProposal(asChecked(base), state({ utxos: heldBy(hex32(55)), holders })), { ok: true });
    // a refusal names the holder, so that the coordinator shows it to the proposer, who can merge it
    const stranding = new Map([[hex32(55), [`0x${hex32(9)}:0`]]]);
    const refused = validateProposal(asChecked(base), state({ utxos: heldBy(hex32(55)), holders: stranding }));
    assert.deepEqual(refused.ok ? [] : [refused.reason, refused.earlier], ['input_held', hex32(55)]);
    assert.deepEqual(
      validateProposal(asChecked(base), state({ chain: { tipHeight: 200, spendDepth: 6 } })),
      { ok: true },
      'deep enough',
    );
  });

  // Found by review: each input's holder was read and its requests compared with every request the
  // proposal pays, input after input: a replacement of a holder of hundreds of requests spending
  // hundreds of its inputs cost inputs × requests × requests comparisons for units of inputs + requests
  it('checks each holder of its inputs once, however many of them the proposal spends', () => {
    const all = utxos.map((u) => `${u.txid}:${u.vout}`);
    const spendsAll = proposalFromPayment(buildReplacement(requests, utxos, 2, federation)!, 1, PROPOSER);
    assert.equal(parseTx(spendsAll.unsignedTx).inputs.length, all.length);
    const holders = new Map([[hex32(55), requests.map((r) => r.id)]]);
    const read: string[] = [];
    const s = state({ utxos: heldBy(hex32(55)), holders });
    const counting: ValidationState = { ...s, holder: (txid) => (read.push(txid), s.holder(txid)) };
    assert.deepEqual(validateProposal(asChecked(spendsAll), counting), { ok: true });
    assert.deepEqual(read, [hex32(55)]);
  });

  it('judges each earlier payment once, however many of its requests the proposal pays', () => {
    let reads = 0;
    const inputs = [firstInput];
    const e: SignedPayment = {
      ...earlier(hex32(42), []),
      get inputs() {
        reads++;
        return inputs;
      },
    };
    const signed = new Map(base.requestIds.map((id) => [id, [e]]));
    assert.equal(base.requestIds.length, 2);
    assert.deepEqual(validateProposal(asChecked(base), state({ signed })), { ok: true });
    assert.equal(reads, 1, 'the inputs of the payment both requests are in, read for each');
  });

  it('allows paying a request again only in a replacement that spends an input of every earlier payment', () => {
    const first = [earlier(hex32(42), [firstInput])];
    const check = (s: ValidationState) => validateProposal(asChecked(base), s);
    assert.deepEqual(check(state({ signed: new Map([[base.requestIds[0]!, first]]) })), { ok: true });
    // also once the request is marked batched by that earlier payment
    const batched = new Map(
      requests.map((r) => [r.id, { status: 'batched', scriptPubKey: r.scriptPubKey, sats: r.sats, counts: false }]),
    );
    const both = new Map(requests.map((r) => [r.id, first]));
    assert.deepEqual(check(state({ requests: batched, signed: both })), { ok: true });
    const unsigned = check(state({ requests: batched }));
    assert.equal(
      unsigned.ok ? 'ok' : unsigned.reason,
      'request_not_payable',
      'batched by a payment this member never signed',
    );
    const two = [...first, earlier(hex32(43), [`${hex32(88)}:1`])];
    const verdict = check(state({ signed: new Map([[base.requestIds[0]!, two]]) }));
    assert.equal(verdict.ok ? 'ok' : verdict.reason, 'double_payment');
  });

  it('replaces an earlier payment that is not finalized at the same rate (proposals that raced), a finalized one only at a higher rate', () => {
    const signedOnly = new Map([[base.requestIds[0]!, [earlier(hex32(42), [firstInput], 2, false, false)]]]);
    assert.deepEqual(validateProposal(asChecked(base), state({ signed: signedOnly })), { ok: true });
    const finalized = validateProposal(
      asChecked(base),
      state({ signed: new Map([[base.requestIds[0]!, [earlier(hex32(42), [firstInput], 2)]]]) }),
    );
    assert.equal(finalized.ok ? 'ok' : finalized.reason, 'replacement_fee_too_low');
  });

  it('refuses a held request its operator has not released, and new outflow beyond the window cap', () => {
    const sats = requests[0]!.sats; // both requests are for the same amount
    const check = (o: Overrides) => {
      const v = validateProposal(asChecked(base), state(o));
      return v.ok ? 'ok' : v.reason;
    };
    const low = { maxRequestSats: sats - 1n };
    assert.equal(check({ limits: low }), 'request_held', 'over the per-request limit, not released');
    assert.equal(check({ limits: low, released: new Set([requests[0]!.id]) }), 'request_held', 'one of two released');
    assert.equal(check({ limits: low, released: new Set(requests.map((r) => r.id)) }), 'ok', 'released here');
    const cap = { windowSats: 2n * sats + 5n };
    assert.equal(check({ limits: cap, used: 5n }), 'ok', 'fits the window exactly');
    assert.equal(check({ limits: cap, used: 6n }), 'rate_limited', 'one sat over the window');
    // a replacement adds no outflow: its requests left the window when the first payment was signed
    const first = new Map(requests.map((r) => [r.id, [earlier(hex32(42), [firstInput], 1, false, false)]]));
    const batched = new Map(
      requests.map((r) => [r.id, { status: 'batched', scriptPubKey: r.scriptPubKey, sats: r.sats, counts: false }]),
    );
    assert.equal(check({ limits: cap, used: cap.windowSats, signed: first, requests: batched }), 'ok', 'a replacement');
    // a payment recorded before the requests were ingested here counted none of them: this one does
    assert.equal(check({ limits: cap, used: cap.windowSats, signed: first }), 'rate_limited', 'still queued');
  });

  it('ignores an earlier payment that can never confirm (another transaction spent one of its inputs)', () => {
    const dead = [earlier(hex32(43), [`${hex32(88)}:1`], 1, true)];
    assert.deepEqual(validateProposal(asChecked(base), state({ signed: new Map([[base.requestIds[0]!, dead]]) })), {
      ok: true,
    });
  });
});

describe('proposals at the edge (checkProposal)', () => {
  const base = baseProposal();
  const bad: [string, unknown, RegExp][] = [
    ['not a map', 'hello', /must be a map/],
    ['a transaction that does not parse', { ...base, unsignedTx: Uint8Array.of(1, 2, 3) }, /does not parse/],
    [
      'a non-canonical request id',
      { ...base, requestIds: [base.requestIds[0]!.replace(/:(\d+)$/, ':0$1')] },
      /canonical/,
    ],
    ['an upper-case request id', { ...base, requestIds: [`0x${'AB'.repeat(32)}:0`] }, /canonical/],
    ['prevouts that do not match the inputs', { ...base, prevouts: base.prevouts.slice(1) }, /inputs but/],
    [
      'more inputs than any relayable transaction',
      { ...base, prevouts: Array.from({ length: 50_000 }, () => base.prevouts[0]) },
      /at most/,
    ],
    [
      'a witness on an unsigned input',
      withTx((t) => ({ ...t, inputs: t.inputs.map((i) => ({ ...i, witness: [Uint8Array.of(1)] })) })),
      /no scriptSig or witness/,
    ],
  ];
  for (const [name, body, message] of bad) {
    it(`refuses ${name}`, () =>
      assert.throws(
        () => checkProposal(body),
        (err: Error & { code?: string }) => err.code === 'invalid_proposal' && message.test(err.message),
      ));
  }

  it('keeps only the fields of a proposal', () => {
    const checked = checkProposal({
      ...base,
      extra: 'x'.repeat(1000),
      prevouts: base.prevouts.map((p) => ({ ...p, junk: 1 })),
    });
    assert.deepEqual(Object.keys(checked.proposal).sort(), [
      'prevouts',
      'proposer',
      'requestIds',
      'round',
      'unsignedTx',
      'version',
    ]);
    assert.deepEqual(Object.keys(checked.proposal.prevouts[0]!).sort(), ['scriptPubKey', 'value']);
    assert.equal(checked.txid, proposalTxid(base));
  });

  it("holds no view into the frame it came in: a kept proposal keeps its own bytes, not a peer's 4 MiB", () => {
    // as the links decode a frame: binary fields are views into the frame's buffer
    const padded = { ...base, padding: new Uint8Array(4 * 1024 * 1024 - 1000) };
    const frame = decodeFrame(encodeFrame('proposal', padded), new Map([['proposal', () => true]]));
    assert.ok(typeof frame === 'object');
    const body = frame.body as typeof base;
    assert.ok(body.unsignedTx.buffer.byteLength > 4_000_000, 'the decoded body is a view into the frame');
    const checked = checkProposal(body);
    const held = [
      checked.proposal.unsignedTx,
      ...checked.proposal.prevouts.map((p) => p.scriptPubKey),
      ...checked.tx.inputs.flatMap((i) => [i.scriptSig, ...i.witness]),
      ...checked.tx.outputs.map((o) => o.scriptPubKey),
    ];
    for (const bytes of held) assert.ok(bytes.buffer.byteLength < 100_000, `${bytes.buffer.byteLength} bytes held`);
  });
});

describe('proposal storage', () => {
  it('stores the proposal and reserves its inputs in the same batch', async (t) => {
    const store = await openTempStore(t);
    const setup = store.batch();
    for (const u of utxos)
      await registerUtxo(setup, {
        txid: u.txid,
        vout: u.vout,
        value: u.value,
        scriptPubKey: u.scriptPubKey,
        height: u.height!,
        pegIn: true,
      });
    await setup.write({ sync: true });

    const proposal = baseProposal();
    const batch = store.batch();
    const txid = await stageProposal(batch, checkProposal(proposal));
    assert.equal(txid, proposalTxid(proposal));
    // nothing visible before the batch is written
    assert.equal(await store.get(proposalKey(txid)), undefined);
    await batch.write({ sync: true });
    const stored = await store.get<Proposal>(proposalKey(txid));
    assert.deepEqual(stored?.requestIds, proposal.requestIds);
    for (const input of parseTx(proposal.unsignedTx).inputs) {
      const u = await getUtxo(store, input);
      assert.equal(u?.state, 'reserved');
      assert.equal(u?.reservedBy, txid);
    }
    // a second proposal on the same inputs is refused and stages nothing
    const other = { ...proposal, round: 2, unsignedTx: serializeTx({ ...parseTx(proposal.unsignedTx), locktime: 1 }) };
    await assert.rejects(stageProposal(store.batch(), checkProposal(other)), { code: 'utxo_reserved' });
  });
});
