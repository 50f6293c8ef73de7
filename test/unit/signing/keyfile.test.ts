import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { parseSecretKey, takeSecretKeyFromEnv } from '../../../src/signing/keyfile.js';

const NAME = 'PEGOUT_MEMBER_KEY';
const KEY = '11'.repeat(32);

describe('a member key from the environment', () => {
  it('is deleted from process.env as it is read, so a process started afterwards does not inherit it', () => {
    process.env[NAME] = KEY;
    try {
      assert.equal(toHex(takeSecretKeyFromEnv(process.env, NAME)), KEY);
      assert.equal(NAME in process.env, false);
      const seen = execFileSync(process.execPath, ['-e', `process.stdout.write(String(process.env.${NAME}))`], {
        encoding: 'utf8',
      });
      assert.equal(seen, 'undefined');
    } finally {
      delete process.env[NAME];
    }
  });

  it('is deleted even when it is not a valid key, and the error does not echo it', () => {
    const env: NodeJS.ProcessEnv = { [NAME]: 'zz'.repeat(32) };
    assert.throws(
      () => takeSecretKeyFromEnv(env, NAME),
      (err: Error & { code?: string }) => err.code === 'invalid_key_file' && !err.message.includes('zz'),
    );
    assert.deepEqual(env, {});
  });
});

describe('a parsed secret key', () => {
  it("leaves no copy in Node's shared Buffer pool, where a later small Buffer's backing store would hold it", () => {
    const key = parseSecretKey(toHex(randomBytes(32)), 'test');
    const later = Buffer.from('abcd', 'hex');
    // the key looked for through a view of it: Buffer.from(key) would put a copy in the pool itself
    const view = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
    assert.equal(Buffer.from(later.buffer).includes(view), false);
  });
});
