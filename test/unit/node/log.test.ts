import assert from 'node:assert/strict';
import { it } from 'node:test';
import { createLogger } from '../../../src/node/log.js';

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
