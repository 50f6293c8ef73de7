import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { REJECTION_WORDS, statusWords, timeline, type TimelineInput } from '../../../src/api/lifecycle.js';
import { classifyQuery, parseLookup } from '../../../src/api/lookup.js';
import { currentPayment, type PaymentStatus } from '../../../src/api/status.js';
import { activityPoints } from '../../../src/metrics/activity.js';

const TX = `0x${'ab'.repeat(32)}`;
const base: TimelineInput = {
  status: 'accepted',
  block: 7,
  txHash: TX,
  history: [{ status: 'accepted', at: '2026-11-25T00:00:00.000Z' }],
  broadcasting: true,
};
const states = (input: TimelineInput) => timeline(input).map((s) => `${s.step}:${s.state}`);

describe('plain words', () => {
  it('say what every rejection reason means for the coins, and what held and rate-limited requests wait for', () => {
    for (const [reason, words] of Object.entries(REJECTION_WORDS)) {
      assert.equal(statusWords('rejected', reason), words);
      assert.match(words, /these coins were burned and (cannot|will not) be paid$/, reason);
    }
    assert.match(statusWords('rejected', 'invalid_address'), /^the address has a bad checksum/);
    assert.match(statusWords('held'), /per-request limit.*operators release/);
    assert.match(statusWords('rate_limited'), /outflow limit/);
    // a status a newer member reports is shown as its name
    assert.equal(statusWords('quarantined'), 'quarantined');
    assert.equal(statusWords('rejected', 'some_new_reason'), 'rejected (some_new_reason)');
  });
});

describe('the timeline', () => {
  it('of a request waiting for a payment, then signed, then paid', () => {
    assert.deepEqual(states(base), [
      'requested:done',
      'final:done',
      'batched:now',
      'signatures:todo',
      'broadcast:todo',
      'confirmations:todo',
      'paid:todo',
    ]);
    const payment = { txid: 'aa'.repeat(32), signatures: '1/2', finalized: false, broadcast: false, confirmations: 0 };
    const signing = timeline({ ...base, status: 'batched', payment });
    assert.deepEqual(
      signing.slice(2, 4).map((s) => [s.state, s.text]),
      [
        ['done', `in payment ${'aa'.repeat(32)}`],
        ['now', 'signatures 1/2'],
      ],
    );
    const signed = { ...payment, signatures: '2/2', finalized: true };
    assert.equal(
      timeline({ ...base, status: 'signed', payment: signed, broadcasting: false }).find((s) => s.step === 'broadcast')
        ?.text,
      'not broadcast: this member has no Bitcoin Core',
    );
    const history = [
      ...base.history,
      { status: 'signed', at: '2026-11-25T00:01:00.000Z' },
      { status: 'paid', at: '2026-11-25T00:30:00.000Z' },
    ];
    const paid = timeline({
      ...base,
      status: 'paid',
      history,
      payment: { ...signed, broadcast: true, confirmations: 6 },
    });
    assert.ok(paid.every((s) => s.state === 'done'));
    // a payment finalized before this member signed: batched and signed at the same moment
    assert.equal(paid.find((s) => s.step === 'batched')?.at, '2026-11-25T00:01:00.000Z');
    assert.equal(paid.find((s) => s.step === 'paid')?.at, '2026-11-25T00:30:00.000Z');
    assert.equal(paid.find((s) => s.step === 'confirmations')?.text, '6 confirmations');
  });

  it('of a rejected request stops at the sidechain with its reason; held and unknown statuses say what they wait for', () => {
    const rejected = timeline({ ...base, status: 'rejected', reason: 'below_minimum' });
    assert.deepEqual(
      rejected.map((s) => s.state),
      ['done', 'failed'],
    );
    assert.equal(rejected[1]!.text, REJECTION_WORDS.below_minimum);
    assert.equal(timeline({ ...base, status: 'held' })[2]!.text, statusWords('held'));
    assert.equal(timeline({ ...base, status: 'quarantined' })[2]!.text, 'quarantined');
  });
});

describe('lookups', () => {
  it('classify pasted text and check every parameter, naming the one that is wrong', () => {
    assert.deepEqual(classifyQuery(` ${TX.toUpperCase().replace('0X', '0x')} `), { kind: 'evmTx', value: TX });
    assert.deepEqual(classifyQuery(`0x${'AB'.repeat(20)}`), { kind: 'evmAddress', value: `0x${'ab'.repeat(20)}` });
    assert.deepEqual(classifyQuery('CD'.repeat(32)), { kind: 'bitcoinTxid', value: 'cd'.repeat(32) });
    assert.deepEqual(classifyQuery('<b>x</b>'), { kind: 'bitcoinAddress', value: '<b>x</b>' });
    assert.equal(classifyQuery('  '), undefined);
    const parse = (query: string) => parseLookup(new URLSearchParams(query));
    assert.deepEqual(parse(`evmTx=${TX}&limit=5`), {
      lookup: { kind: 'evmTx', value: TX },
      page: { limit: 5, cursor: undefined },
    });
    assert.deepEqual(parse('evmTx=0x12'), {
      parameter: 'evmTx',
      value: '0x12',
      expected: '0x followed by 64 hex characters (an EVM transaction hash)',
    });
    assert.equal((parse('') as { parameter: string }).parameter, 'q');
    assert.equal((parse(`q=${TX}&evmTx=${TX}`) as { parameter: string }).parameter, 'evmTx');
    assert.equal((parse('q=%20') as { parameter: string }).parameter, 'q');
    for (const limit of ['0', '101', '1.5', 'x'])
      assert.equal((parse(`q=${TX}&limit=${limit}`) as { parameter: string }).parameter, 'limit', limit);
    // a cursor is the tail of an index key of that lookup, nothing else
    assert.equal((parse(`q=${TX}&cursor=0000000003`) as { page: { cursor: string } }).page.cursor, '0000000003');
    for (const cursor of ['3', '../x', `0000000001/${TX}/0000000000`])
      assert.equal(
        (parse(`evmTx=${TX}&cursor=${encodeURIComponent(cursor)}`) as { parameter: string }).parameter,
        'cursor',
      );
    assert.ok('lookup' in parse(`bitcoinAddress=x&cursor=0000000001/${TX}/0000000000`));
    assert.equal((parse(`bitcoinAddress=${'x'.repeat(2001)}`) as { parameter: string }).parameter, 'bitcoinAddress');
  });
});

describe('payments of a request', () => {
  const pay = (txid: string, over: Partial<PaymentStatus> = {}): PaymentStatus => ({
    txid,
    signatures: '2/2',
    finalized: true,
    broadcastAttempts: 1,
    broadcast: true,
    confirmations: 0,
    replaces: [],
    ...over,
  });
  it('the current one is the confirmed one, else one nothing replaced, else a finalized one', () => {
    assert.equal(currentPayment([]), undefined);
    assert.equal(currentPayment([pay('a'), pay('b', { replaces: ['a'] })])!.txid, 'b');
    assert.equal(currentPayment([pay('a', { confirmations: 1 }), pay('b', { replaces: ['a'] })])!.txid, 'a');
    assert.equal(
      currentPayment([pay('a', { finalized: false }), pay('b', { supersededBy: 'c' }), pay('c')])!.txid,
      'c',
    );
  });
});

describe('signing activity', () => {
  it('is the rate between samples, never negative, with no latency where nothing was signed', () => {
    const at = (s: number) => Date.UTC(2026, 10, 25, 0, 0, s);
    const sample = (s: number, signatures: number, sum: number, count: number, settled: number) => ({
      t: at(s),
      signatures,
      signingSeconds: sum,
      signings: count,
      settled,
    });
    assert.deepEqual(activityPoints([sample(0, 0, 0, 0, 0), sample(2, 10, 0.5, 5, 4), sample(4, 10, 0.5, 5, 1)]), [
      { at: new Date(at(2)).toISOString(), signaturesPerSecond: 5, signingMs: 100, requestsPerSecond: 2 },
      { at: new Date(at(4)).toISOString(), signaturesPerSecond: 0, signingMs: null, requestsPerSecond: 0 },
    ]);
    assert.deepEqual(activityPoints([sample(0, 0, 0, 0, 0)]), []);
  });
});
