import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  MAX_LISTED,
  outputDifferences,
  reserveReport,
  type CoreView,
  type HeldOutput,
  type OwedRequest,
  type ReserveBooks,
} from '../../../src/wallet/reserves.js';

// The reserve audit's judgement, from plain inputs: assets against liabilities, peg-ins − paid,
// and this member's outputs against Bitcoin Core's, compared only at the same block.

const txid = (n: number): string => n.toString(16).padStart(64, '0');
const out = (n: number, value: bigint, height: number | null = 100): HeldOutput => ({
  txid: txid(n),
  vout: 0,
  value,
  height,
});
const owe = (n: number, sats: bigint, status: OwedRequest['status'] = 'accepted', settled = false): OwedRequest => ({
  id: `0x${txid(n)}:0`,
  status,
  sats,
  settled,
});
const CURSOR = { height: 120, hash: 'aa'.repeat(32) };

function books(over: Partial<ReserveBooks> = {}): ReserveBooks {
  return {
    cursor: CURSOR,
    outputs: [out(1, 50_000_000n), out(2, 30_000_000n)],
    owed: [owe(10, 20_000_000n), owe(11, 5_000_000n, 'broadcast')],
    pegIns: 100_000_000n,
    paid: 20_000_000n,
    unnamed: { sats: 0n, payments: 0 },
    ...over,
  };
}
const coreAt = (outputs: readonly HeldOutput[], height = CURSOR.height, hash: string | undefined = CURSOR.hash) =>
  ({ height, hash, outputs }) satisfies CoreView;

describe('reserve report', () => {
  it('balanced books that Core confirms at the same block: ok, with the ledger', () => {
    const b = books();
    const r = reserveReport(b, coreAt(b.outputs), 'now');
    assert.equal(r.verdict, 'ok');
    assert.deepEqual(r.faults, []);
    assert.deepEqual(r.assets, { sats: 80_000_000n, outputs: 2 });
    assert.equal(r.liabilities.sats, 25_000_000n);
    assert.equal(r.liabilities.requests, 2);
    assert.deepEqual(r.liabilities.byStatus, {
      accepted: { requests: 1, sats: 20_000_000n },
      broadcast: { requests: 1, sats: 5_000_000n },
    });
    assert.equal(r.surplus, 55_000_000n);
    assert.deepEqual(r.ledger, {
      pegIns: 100_000_000n,
      paid: 20_000_000n,
      pegInsMinusPaid: 80_000_000n,
      unexplained: 0n,
    });
    assert.ok(r.core.compared);
    assert.equal(r.core.sats, 80_000_000n);
    assert.deepEqual(r.core.differences, { onlyInCore: 0, onlyHere: 0, otherValue: 0 });
    assert.equal(r.member, CURSOR);
  });

  it('a request whose payment is applied is settling: paid in the ledger, no liability', () => {
    const b = books({ owed: [owe(10, 20_000_000n), owe(11, 5_000_000n, 'broadcast', true)] });
    const r = reserveReport(b, coreAt(b.outputs), 'now');
    assert.equal(r.liabilities.sats, 20_000_000n);
    assert.deepEqual(r.settling, { sats: 5_000_000n, requests: 1 });
    assert.equal(r.ledger.paid, 25_000_000n);
    assert.equal(r.ledger.unexplained, -5_000_000n, 'here the books say 5M more left than the outputs show');
  });

  it('assets under liabilities at the compared block: reserves_short', () => {
    const b = books({ owed: [owe(10, 79_000_000n), owe(11, 2_000_000n, 'held'), owe(12, 1n, 'rate_limited')] });
    const r = reserveReport(b, coreAt(b.outputs), 'now');
    assert.equal(r.verdict, 'faulty');
    assert.deepEqual(
      r.faults.map((f) => f.kind),
      ['reserves_short'],
    );
    assert.match(
      r.faults[0]!.message,
      /assets 80000000 sats < liabilities 81000001 sats \(3 requests\): short by 1000001/,
    );
    assert.equal(r.surplus, -1_000_001n);
  });

  // a payment found on the chain whose look-alike requests this member cannot name until a peer that
  // signed it announces it (node/settlement.ts): its outflow stands for them, within the paid depth
  it('a payment whose requests are not named yet stands for them; short by what it does not cover', () => {
    const b = books({ owed: [owe(10, 79_000_000n), owe(11, 2_000_000n, 'held')] });
    assert.equal(
      reserveReport({ ...b, unnamed: { sats: 1_000_000n, payments: 1 } }, coreAt(b.outputs), 'now').verdict,
      'ok',
    );
    const r = reserveReport({ ...b, unnamed: { sats: 999_999n, payments: 1 } }, coreAt(b.outputs), 'now');
    assert.match(
      r.faults[0]!.message,
      /assets 80000000 sats \(and 999999 paid by 1 payments whose requests are not named yet\) < liabilities 81000000 sats \(2 requests\): short by 1 sats/,
    );
  });

  it('equal assets and liabilities are not short', () => {
    const b = books({ owed: [owe(10, 80_000_000n)] });
    assert.equal(reserveReport(b, coreAt(b.outputs), 'now').verdict, 'ok');
  });

  it('Core with an output this member lacks, one it does not have, and one of another value: reserves_mismatch', () => {
    const b = books({ outputs: [out(1, 50_000_000n), out(2, 30_000_000n), out(3, 1_000n)] });
    const core = [out(1, 50_000_000n), out(2, 30_000_001n), out(4, 7_000n)];
    const r = reserveReport(b, coreAt(core), 'now');
    assert.equal(r.verdict, 'faulty');
    assert.deepEqual(
      r.faults.map((f) => f.kind),
      ['reserves_mismatch'],
    );
    assert.ok(r.core.compared);
    assert.deepEqual(r.core.differences, { onlyInCore: 1, onlyHere: 1, otherValue: 1 });
    assert.deepEqual(r.core.listed, [
      { txid: txid(2), vout: 0, ours: 30_000_000n, core: 30_000_001n },
      { txid: txid(3), vout: 0, ours: 1_000n, core: undefined },
      { txid: txid(4), vout: 0, ours: undefined, core: 7_000n },
    ]);
    assert.match(r.faults[0]!.message, /1 outputs only in Core, 1 only here, 1 with another value/);
  });

  it('the same total in other outputs is still a mismatch', () => {
    const b = books();
    const r = reserveReport(b, coreAt([out(1, 50_000_000n), { ...out(2, 30_000_000n), vout: 1 }]), 'now');
    assert.deepEqual(
      r.faults.map((f) => f.kind),
      ['reserves_mismatch'],
    );
  });

  it('short and mismatched at once: both faults', () => {
    const b = books({ owed: [owe(10, 90_000_000n)] });
    const r = reserveReport(b, coreAt([]), 'now');
    assert.deepEqual(
      r.faults.map((f) => f.kind),
      ['reserves_short', 'reserves_mismatch'],
    );
  });

  it('Core at another block (height or hash): not compared, and nothing judged, not even a shortfall', () => {
    const b = books({ owed: [owe(10, 90_000_000n)] });
    for (const core of [coreAt([], 121, 'bb'.repeat(32)), coreAt([], 120, 'cc'.repeat(32))]) {
      const r = reserveReport(b, core, 'now');
      assert.equal(r.verdict, 'not_compared');
      assert.deepEqual(r.faults, []);
      assert.ok(!r.core.compared);
      assert.match(r.core.reason, /^not compared: Core at 12[01] \([bc]{16}…\), member at 120 \(a{16}…\)$/);
    }
    // a node that does not say its tip hash is compared by height
    assert.equal(reserveReport(books(), coreAt(books().outputs, 120, undefined), 'now').verdict, 'ok');
  });

  it('Core unavailable, or a member before its first block: not compared', () => {
    const r = reserveReport(books(), { unavailable: "Bitcoin Core's scan failed: timeout" }, 'now');
    assert.equal(r.verdict, 'not_compared');
    assert.ok(!r.core.compared && r.core.reason.includes('timeout'));
    const fresh = reserveReport(books({ cursor: null, outputs: [] }), coreAt([]), 'now');
    assert.equal(fresh.verdict, 'not_compared');
    assert.ok(!fresh.core.compared && /no Bitcoin block/.test(fresh.core.reason));
  });

  it('without Bitcoin Core (declared funding): unaudited, never faulted', () => {
    const r = reserveReport(books({ cursor: null, owed: [owe(10, 900_000_000n)] }), null, 'now');
    assert.equal(r.verdict, 'unaudited');
    assert.deepEqual(r.faults, []);
    assert.equal(r.surplus, -820_000_000n, 'the books are still reported');
    assert.ok(!r.core.compared && /declared/.test(r.core.reason));
  });

  it('a reserved output whose block left the chain is no asset and is not compared', () => {
    const b = books({ outputs: [out(1, 50_000_000n), out(2, 30_000_000n), out(3, 9_000n, null)] });
    const r = reserveReport(b, coreAt([out(1, 50_000_000n), out(2, 30_000_000n)]), 'now');
    assert.equal(r.verdict, 'ok');
    assert.deepEqual(r.unconfirmed, { sats: 9_000n, outputs: 1 });
    assert.equal(r.assets.sats, 80_000_000n);
  });

  it(`lists at most ${MAX_LISTED} differences and counts them all`, () => {
    const many = Array.from({ length: MAX_LISTED + 5 }, (_, i) => out(100 + i, 1_000n));
    const r = reserveReport(books(), coreAt([...books().outputs, ...many]), 'now');
    assert.ok(r.core.compared);
    assert.equal(r.core.listed.length, MAX_LISTED);
    assert.equal(r.core.differences.onlyInCore, MAX_LISTED + 5);
  });

  it('outputDifferences: none for the same outputs in any order', () => {
    const a = [out(1, 5n), out(2, 6n)];
    assert.deepEqual(outputDifferences(a, [...a].reverse()), []);
  });
});
