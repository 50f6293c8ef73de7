import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { takeSecretKeyFromEnv } from '../../../src/signing/keyfile.js';

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
