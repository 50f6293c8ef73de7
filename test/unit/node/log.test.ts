import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createLogger, peerLog } from '../../../src/node/log.js';

it('writes one JSON line per event, binds fields, filters by level, and redacts secrets', () => {
  const lines: string[] = [];
  const log = createLogger({ level: 'info', write: (l) => lines.push(l) }).child({ member: 'abc' });
  log.debug('hidden');
  log.info('round_started', { round: 3, amount: 5n, bytes: Uint8Array.of(1, 2) });
  log.warn('oops', {
    secretKey: 'deadbeef',
    nested: { password: 'hunter2', cookie: 'c' },
    err: Object.assign(new Error('boom'), { code: 'x' }),
  });
  assert.equal(lines.length, 2);
  assert.ok(lines.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n')));
  const [a, b] = lines.map((l) => JSON.parse(l));
  assert.deepEqual(
    { level: a.level, event: a.event, member: a.member, round: a.round, amount: a.amount, bytes: a.bytes },
    { level: 'info', event: 'round_started', member: 'abc', round: 3, amount: '5', bytes: '0102' },
  );
  assert.equal(b.secretKey, '[redacted]');
  assert.deepEqual(b.nested, { password: '[redacted]', cookie: '[redacted]' });
  assert.deepEqual(b.err, { name: 'Error', message: 'boom', code: 'x' });
  assert.ok(!lines.join('').includes('deadbeef') && !lines.join('').includes('hunter2'));
});

it("holds each source's warnings to a burst and a rate, and says how many it left out", () => {
  const lines: string[] = [];
  let now = 0;
  const log = peerLog(createLogger({ write: (l) => lines.push(l) }), { perSecond: 2, burst: 3, sources: 2 }, () => now);
  for (let i = 0; i < 10; i++) log.warn('a', 'refused', { i });
  log.warn('b', 'refused', { i: 0 });
  const written = (): { source?: string; i: number; suppressed?: number }[] => lines.map((l) => JSON.parse(l));
  assert.deepEqual(
    written().map((l) => l.i),
    [0, 1, 2, 0],
    "a's burst is spent; b has its own",
  );
  now = 500; // one line's worth refilled
  log.warn('a', 'refused', { i: 10 });
  log.warn('a', 'refused', { i: 11 });
  assert.deepEqual(written().slice(4), [{ ...written()[4]!, i: 10, suppressed: 7 }]);
  // a third source pushes out the longest known, a, whose budget starts afresh
  log.warn('c', 'refused', { i: 0 });
  for (let i = 12; i < 15; i++) log.warn('a', 'refused', { i });
  assert.deepEqual(
    written()
      .slice(5)
      .map((l) => l.i),
    [0, 12, 13, 14],
    'c written; a forgotten, so its budget is whole again',
  );
});
