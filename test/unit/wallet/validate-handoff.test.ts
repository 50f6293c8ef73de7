import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation, type Federation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { parseTx, serializeTx, txid as txidOf } from '../../../src/bitcoin/tx.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import type { FeePolicy } from '../../../src/wallet/fee.js';
import {
  buildSweeps,
  buildTestSpend,
  makeRotationPlan,
  type HandoffPolicy,
  type HandoffTx,
} from '../../../src/wallet/handoff.js';
import { DEFAULT_LIMITS } from '../../../src/wallet/limits.js';
import { proposalFromPayment, type CheckedProposal } from '../../../src/wallet/proposal.js';
import {
  LIVE_PAYMENTS_PER_SENDER,
  validateProposal,
  type HandoffView,
  type SignedPayment,
  type ValidationState,
} from '../../../src/wallet/validate.js';
import type { UtxoRecord } from '../../../src/storage/records.js';

// What a member signs during a rotation (validateHandoff): the attacks a proposer could try with
// a proposal that pays no request, each refused from the member's own state.

const key = (i: number): Uint8Array => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i));
const fed = (t: number, ids: number[]): Federation =>
  buildFederation({ network: 'regtest', threshold: t, pubkeys: ids.map(key) });
const OLD = fed(2, [1, 2, 3]);
const NEW = fed(3, [1, 2, 4, 5]);
/** Whose link brought the handoffs these tests check. */
const PROPOSER = toHex(OLD.pubkeys[0]!);
const PLAN = makeRotationPlan(OLD, NEW, { activationHeight: 200, evmBoundary: 50 }, 'plan');
const POLICY: FeePolicy = { floor: 1, estimate: 2, maxMultiple: 3, maxRate: 500, maxSharePerRequest: 100_000n };
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');

function utxo(i: number, owner: Federation = OLD, extra: Partial<UtxoRecord> = {}): UtxoRecord {
  return {
    txid: hex32(i),
    vout: 0,
    value: 5_000_000n,
    scriptPubKey: owner.scriptPubKey,
    height: 100,
    state: 'unspent',
    ...extra,
  };
}

interface Options {
  side?: 'from' | 'to';
  tip?: number;
  proven?: boolean;
  earlier?: SignedPayment[];
  readAll?: boolean;
  owed?: number;
  utxos?: UtxoRecord[];
  holders?: Map<string, string[]>;
  noPlan?: boolean;
}

function state(o: Options = {}): ValidationState {
  const side = o.side ?? 'from';
  const utxos = new Map((o.utxos ?? [utxo(1), utxo(2)]).map((u) => [`${u.txid}:${u.vout}`, u]));
  const policy: HandoffPolicy = { plan: PLAN, side, testAmount: 100_000n, maxFee: 100_000n };
  const earlier = o.earlier ?? [];
  const handoff: HandoffView = {
    policy,
    proven: o.proven ?? false,
    owed: o.owed ?? 0,
    readAll: o.readAll ?? true,
    earlier,
  };
  return {
    federation: side === 'from' ? OLD : NEW,
    sender: PROPOSER,
    request: () => undefined,
    utxo: (name) => utxos.get(name),
    signedPayments: () => [],
    holder: (txid) => o.holders?.get(txid),
    ancestors: [],
    fee: POLICY,
    chain: { tipHeight: o.tip ?? 210, spendDepth: 6 },
    limits: DEFAULT_LIMITS,
    released: () => false,
    outflow: { window: 0, used: 0n },
    ...(o.noPlan ? {} : { handoff }),
  };
}

function checked(h: HandoffTx): CheckedProposal {
  const proposal = proposalFromPayment(h, 1, toHex(OLD.pubkeys[0]!));
  const tx = parseTx(proposal.unsignedTx);
  return { proposal, tx, txid: txidOf(tx) };
}

/** The test output at the new address: created by a spend of the old federation. */
const handed = utxo(3, NEW, { handedOver: true });
const sweep = buildSweeps([utxo(1), utxo(2)], 2, PLAN, OLD, 100_000n).sweeps[0]!;
const test = buildTestSpend([utxo(1), utxo(2)], 100_000n, 2, PLAN)!;

function refusal(h: HandoffTx, o: Options): string {
  const v = validateProposal(checked(h), state(o));
  assert.equal(v.ok, false, 'refused');
  return v.ok ? '' : v.reason;
}

describe('a handoff, as a member validates it', () => {
  it('a sweep after the proof, with nothing owed, is signed; so is the test spend before it', () => {
    assert.deepEqual(validateProposal(checked(sweep), state({ proven: true })), { ok: true });
    assert.deepEqual(validateProposal(checked(test), state()), { ok: true });
  });

  it('a member with no rotation signs nothing that pays no request', () => {
    assert.equal(refusal(sweep, { noPlan: true, proven: true }), 'no_payments');
  });

  it('nothing before the activation height, not even the test spend', () => {
    assert.equal(refusal(test, { tip: 199 }), 'handoff_not_active');
  });

  it('no more than the test amount before this member saw the new set sign', () => {
    assert.equal(refusal(sweep, { proven: false }), 'handoff_not_proven');
  });

  it('no sweep while requests this member owes are queued: they would be left unfunded', () => {
    assert.equal(refusal(sweep, { proven: true, owed: 1 }), 'requests_owed');
  });

  it('no sweep of an input a payment in flight holds: its requests would be stranded', () => {
    const held = utxo(2, OLD, { state: 'reserved', reservedBy: hex32(99) });
    const holders = new Map([[hex32(99), [`0x${hex32(7)}:0`]]]);
    assert.equal(refusal(sweep, { proven: true, utxos: [utxo(1), held], holders }), 'input_held');
  });

  it('no sweep of an output this member does not know, nor of one not yet deep enough', () => {
    assert.equal(refusal(sweep, { proven: true, utxos: [utxo(1)] }), 'unknown_input');
    const shallow = utxo(2, OLD, { height: 209 });
    assert.equal(refusal(sweep, { proven: true, utxos: [utxo(1), shallow] }), 'input_unconfirmed');
  });

  it('each step once: a second test spend must replace the first (spend its input), else refused', () => {
    const first = { txid: hex32(50), inputs: [`${hex32(1)}:0`], fee: 300n, vsize: 150, dead: false, finalized: false };
    const other = buildTestSpend([utxo(2)], 100_000n, 2, PLAN)!;
    assert.equal(refusal(other, { earlier: [first] }), 'handoff_done');
    // test spends coin 1, as the first did: a replacement, at most one of them confirms
    assert.deepEqual(validateProposal(checked(test), state({ earlier: [first] })), { ok: true });
    // a dead one (its input spent by another confirmed transaction) blocks nothing
    assert.deepEqual(validateProposal(checked(other), state({ earlier: [{ ...first, dead: true }] })), { ok: true });
  });

  it("a few live replacements from each sender: past them its next one is refused, not another sender's", () => {
    const live = (i: number, from: string): SignedPayment => ({
      txid: hex32(60 + i),
      inputs: [`${hex32(1)}:0`],
      fee: 300n,
      vsize: 150,
      dead: false,
      finalized: false,
      from,
    });
    const mine = Array.from({ length: LIVE_PAYMENTS_PER_SENDER }, (_, i) => live(i, PROPOSER));
    assert.equal(refusal(test, { earlier: mine }), 'too_many_payments');
    // one of them finalized (this one replaces it at a BIP125 fee step), or dead, leaves room; another
    // sender's count is its own
    const settled = [{ ...mine[0]!, finalized: true, fee: 1n }, ...mine.slice(1)];
    assert.deepEqual(validateProposal(checked(test), state({ earlier: settled })), { ok: true });
    const others = mine.map((p) => ({ ...p, from: toHex(OLD.pubkeys[1]!) }));
    assert.deepEqual(validateProposal(checked(test), state({ earlier: others })), { ok: true });
  });

  it("the new set spends to itself once, and only what the old set sent it (a stranger's coin would stall the handoff)", () => {
    const own = buildSweeps([handed], 2, PLAN, NEW, 100_000n).sweeps[0]!;
    const first = { txid: hex32(51), inputs: [`${hex32(8)}:0`], fee: 300n, vsize: 150, dead: false, finalized: true };
    assert.equal(refusal(own, { side: 'to', tip: 150, utxos: [handed], earlier: [first] }), 'handoff_done');
    const stranger = utxo(4, NEW);
    const gift = buildSweeps([stranger], 2, PLAN, NEW, 100_000n).sweeps[0]!;
    assert.equal(refusal(gift, { side: 'to', tip: 150, utxos: [stranger] }), 'not_handed_over');
  });

  it('no sweep before this member read the EVM chain up to the boundary: requests it owes may still come', () => {
    assert.equal(refusal(sweep, { proven: true, readAll: false }), 'requests_owed');
  });

  it('after the proof nothing comes back: a "sweep" returning change to the old address is refused', () => {
    assert.equal(refusal(test, { proven: true }), 'bad_change');
  });

  it('no sweep to an address the plan does not name, even with the proof', () => {
    const tx = parseTx(serializeTx(sweep.tx));
    const stolen = {
      ...sweep,
      tx: {
        ...tx,
        outputs: [tx.outputs[0]!, { ...tx.outputs[1]!, scriptPubKey: witnessScript(1, new Uint8Array(32).fill(3)) }],
      },
    };
    assert.equal(refusal(stolen, { proven: true }), 'unplanned_destination');
  });

  it('a handoff has one output to the new address and at most one back: a sweep padded with outputs to raise its fee is refused', () => {
    // each padded sweep alone is within the fee cap and rate: twenty of them, one an input, would pay
    // twenty times the cap where the plan's sweeps pay a few hundred sats an input
    const tx = parseTx(serializeTx(sweep.tx));
    const [commitment, to] = tx.outputs as [(typeof tx.outputs)[number], (typeof tx.outputs)[number]];
    const dust = Array.from({ length: 40 }, () => ({ value: 330n, scriptPubKey: NEW.scriptPubKey }));
    const padded = {
      ...sweep,
      // the outputs' weight paid for at the sweep's rate, and more: within the cap, the fee it can get
      tx: { ...tx, outputs: [commitment, ...dust, { ...to, value: to.value - 330n * 40n - 10_000n }] },
    };
    assert.equal(refusal(padded, { proven: true }), 'unplanned_destination');
    // and the test spend's change is one output too
    const t = parseTx(serializeTx(test.tx));
    const change = t.outputs[2]!;
    const split = {
      ...test,
      tx: {
        ...t,
        outputs: [...t.outputs.slice(0, 2), { ...change, value: change.value - 330n }, { ...change, value: 330n }],
      },
    };
    assert.equal(refusal(split, {}), 'unplanned_destination');
  });

  it('the new set spends to itself even before the activation height; to anything else, never', () => {
    const own = buildSweeps([handed], 2, PLAN, NEW, 100_000n).sweeps[0]!;
    assert.deepEqual(validateProposal(checked(own), state({ side: 'to', tip: 150, utxos: [handed] })), {
      ok: true,
    });
    // a new member is asked to sign an old-set sweep: its inputs are not the new federation's
    assert.equal(refusal(sweep, { side: 'to', utxos: [utxo(1), utxo(2)] }), 'input_not_federation');
  });

  // A malicious proposer had each honest member sign distinct sweeps of the same coins after the
  // proof, and test spends before it once each finalized: each pays only the new address within the
  // fee caps, but the chain of them had no end (CPU, and records every later handoff proposal reads)
  it('a handoff replacing a finalized one pays as BIP125 requires: a higher rate and the relay fee on top', () => {
    const as = (h: HandoffTx, txid: string): SignedPayment => {
      const fee = h.prevouts.reduce((a, p) => a + p.value, 0n) - h.tx.outputs.reduce((a, o) => a + o.value, 0n);
      return {
        txid,
        inputs: h.tx.inputs.map((i) => `${i.txid}:${i.vout}`),
        fee,
        vsize: h.vsize,
        dead: false,
        finalized: true,
      };
    };
    const again = buildSweeps([utxo(1), utxo(2)], 3, PLAN, OLD, 100_000n).sweeps[0]!;
    assert.equal(refusal(sweep, { proven: true, earlier: [as(sweep, hex32(52))] }), 'replacement_fee_too_low');
    assert.deepEqual(validateProposal(checked(again), state({ proven: true, earlier: [as(sweep, hex32(52))] })), {
      ok: true,
    });
    // before the proof too: a test spend replacing a finalized one
    const bumped = buildTestSpend([utxo(1), utxo(2)], 100_000n, 3, PLAN)!;
    assert.equal(refusal(test, { earlier: [as(test, hex32(53))] }), 'replacement_fee_too_low');
    // what may pass a slot later is refused for that first, and kept to retry (review of 01b941c)
    assert.equal(refusal(test, { tip: 199, earlier: [as(test, hex32(53))] }), 'handoff_not_active');
    assert.deepEqual(validateProposal(checked(bumped), state({ earlier: [as(test, hex32(53))] })), { ok: true });
  });

  it('after the proof, a few live sweeps of the same coins from each sender; sweeps of other coins are not counted', () => {
    const live = (i: number, coin: number): SignedPayment => ({
      txid: hex32(70 + i),
      inputs: [`${hex32(coin)}:0`],
      fee: 300n,
      vsize: 150,
      dead: false,
      finalized: false,
      from: PROPOSER,
    });
    const variants = Array.from({ length: LIVE_PAYMENTS_PER_SENDER }, (_, i) => live(i, 1));
    assert.equal(refusal(sweep, { proven: true, earlier: variants }), 'too_many_payments');
    const elsewhere = Array.from({ length: LIVE_PAYMENTS_PER_SENDER }, (_, i) => live(i, 9));
    assert.deepEqual(validateProposal(checked(sweep), state({ proven: true, earlier: elsewhere })), { ok: true });
  });
});
