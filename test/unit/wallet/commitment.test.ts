import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import {
  commitmentScript,
  commitsTo,
  COMMITMENT_TAG,
  readCommitment,
  requestCommitment,
} from '../../../src/wallet/commitment.js';
import { repoRoot } from '../../support/paths.js';

// The commitment's bytes are a contract with every auditor: these vectors pin them, computed by a
// second route (node:crypto and Buffer, none of the code under test) and written down once.

function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** BIP340 taggedHash and the SPEC's message, written out independently of src/. */
function independentCommitment(ids: readonly string[]): string {
  const tag = sha256(Buffer.from('alys-pegout/requests', 'utf8'));
  const m = Buffer.concat(
    ids.map((id) => {
      const [hash, ordinal] = id.split(':') as [string, string];
      const item = Buffer.alloc(36);
      Buffer.from(hash.slice(2), 'hex').copy(item, 0);
      item.writeUInt32LE(Number(ordinal), 32);
      return item;
    }),
  );
  return sha256(tag, tag, m).toString('hex');
}

const A = `0x${Buffer.from(Array.from({ length: 32 }, (_, i) => i)).toString('hex')}:256`;
const B = `0x${'11'.repeat(32)}:0`;
const C = `0x${'ab'.repeat(32)}:1`;
/** The worked example of docs/payment-format.md: three requests in the order a proposer lists them (id order). */
const EXAMPLE = [A, B, C];
const EXAMPLE_COMMITMENT = '006e3a35a7db4f603bef90022f0a80a137235439777f4a3abe6e9be65b8a14ef';
const REORDERED_COMMITMENT = 'd4875dd8f3267489edc6c0163802331ccd28c067f3dc39d96c8400a514bd3afb';
const ONE_COMMITMENT = '1b6939a3ba8b24d11d8a38614f0bf951203ad09a96dcbac735ab160bca43b158';
const HUNDRED = Array.from(
  { length: 100 },
  (_, i) => `0x${sha256(Buffer.from(`request ${i}`)).toString('hex')}:${i % 3}`,
);
const HUNDRED_COMMITMENT = '40bbed67fd01457b0a54c555b899b816ee163cdcd1f66427770f88c289eba9ac';

describe('payment commitment vectors', () => {
  it('pins the tag and the worked example, computed by an independent route', () => {
    assert.equal(COMMITMENT_TAG, 'alys-pegout/requests');
    assert.equal(
      sha256(Buffer.from(COMMITMENT_TAG)).toString('hex'),
      'd2878b33fe9b7afc20691da5ca87f387c0d9790d275ed1cf526ae579b008172a',
    );
    assert.equal(independentCommitment(EXAMPLE), EXAMPLE_COMMITMENT);
    assert.equal(toHex(requestCommitment(EXAMPLE)), EXAMPLE_COMMITMENT);
    assert.equal(toHex(commitmentScript(EXAMPLE)), `6a20${EXAMPLE_COMMITMENT}`);
  });

  it('agrees with the worked example in docs/payment-format.md, byte for byte', () => {
    const doc = readFileSync(path.join(repoRoot, 'docs', 'payment-format.md'), 'utf8');
    const block = /<!-- commitment-example -->\n```\n([\s\S]+?)\n```/.exec(doc)?.[1];
    assert.ok(block, 'docs/payment-format.md has the commitment-example block');
    const field = (name: string): string[] => {
      const lines = block.split('\n');
      const start = lines.findIndex((l) => l.startsWith(name));
      const values = [lines[start]!.slice(name.length).trim()];
      for (const l of lines.slice(start + 1)) {
        if (!/^\s/.test(l)) break;
        values.push(l.trim());
      }
      return values;
    };
    assert.deepEqual(field('requests'), EXAMPLE);
    assert.deepEqual(
      field('m'),
      EXAMPLE.map((id) => {
        const [hash, ordinal] = id.split(':') as [string, string];
        const le = Buffer.alloc(4);
        le.writeUInt32LE(Number(ordinal));
        return hash.slice(2) + le.toString('hex');
      }),
    );
    assert.deepEqual(field('tag'), [sha256(Buffer.from(COMMITMENT_TAG)).toString('hex')]);
    assert.deepEqual(field('commitment'), [EXAMPLE_COMMITMENT]);
    assert.deepEqual(field('script'), [`6a20${EXAMPLE_COMMITMENT}`]);
  });

  it('commits to the order: the same requests in another order commit to something else', () => {
    const reordered = [B, C, A];
    assert.equal(independentCommitment(reordered), REORDERED_COMMITMENT);
    assert.equal(toHex(requestCommitment(reordered)), REORDERED_COMMITMENT);
    assert.notEqual(REORDERED_COMMITMENT, EXAMPLE_COMMITMENT);
    const script = commitmentScript(EXAMPLE);
    assert.ok(commitsTo(script, EXAMPLE));
    assert.ok(!commitsTo(script, reordered));
    assert.ok(!commitsTo(script, [A, B]), 'a subset is not the set');
    assert.ok(!commitsTo(script, [...EXAMPLE, C]), 'nor is a request paid twice');
  });

  it('pins a one-request and a 100-request set', () => {
    assert.equal(independentCommitment([B]), ONE_COMMITMENT);
    assert.equal(toHex(requestCommitment([B])), ONE_COMMITMENT);
    assert.equal(independentCommitment(HUNDRED), HUNDRED_COMMITMENT);
    assert.equal(toHex(requestCommitment(HUNDRED)), HUNDRED_COMMITMENT);
    assert.ok(commitsTo(commitmentScript(HUNDRED), HUNDRED));
    assert.ok(!commitsTo(commitmentScript(HUNDRED), HUNDRED.slice(0, 99)));
  });

  it('encodes the ordinal as 4 bytes little-endian: ordinal 1 and 256 differ, and neither is big-endian', () => {
    const hash = `0x${'42'.repeat(32)}`;
    const tag = sha256(Buffer.from(COMMITMENT_TAG));
    const over = (ordinalBytes: number[]): string =>
      sha256(tag, tag, Buffer.from('42'.repeat(32), 'hex'), Buffer.from(ordinalBytes)).toString('hex');
    const one = toHex(requestCommitment([`${hash}:1`]));
    const big = toHex(requestCommitment([`${hash}:256`]));
    assert.equal(one, over([0x01, 0x00, 0x00, 0x00]));
    assert.equal(big, over([0x00, 0x01, 0x00, 0x00]));
    assert.notEqual(one, big);
    assert.notEqual(one, over([0x00, 0x00, 0x00, 0x01]), 'not big-endian');
    assert.equal(toHex(requestCommitment([`${hash}:4294967295`])), over([0xff, 0xff, 0xff, 0xff]));
  });

  it('reads a commitment only from OP_RETURN <32 bytes>', () => {
    const script = commitmentScript(EXAMPLE);
    assert.equal(toHex(readCommitment(script)!), EXAMPLE_COMMITMENT);
    assert.equal(readCommitment(script.subarray(0, 33)), undefined);
    assert.equal(readCommitment(Uint8Array.of(0x6a, 0x21, ...script.subarray(2), 0)), undefined);
    assert.equal(readCommitment(Uint8Array.of(0x6b, ...script.subarray(1))), undefined);
  });

  const nonCanonical: [name: string, id: unknown, names?: string][] = [
    ['an upper-case hash', `0x${'AB'.repeat(32)}:0`],
    ['a 0X prefix', `0X${'ab'.repeat(32)}:0`],
    ['no 0x prefix', `${'ab'.repeat(32)}:0`],
    ['a short hash', `0x${'ab'.repeat(31)}:0`],
    ['a leading zero in the ordinal', `0x${'ab'.repeat(32)}:01`],
    ['a negative ordinal', `0x${'ab'.repeat(32)}:-1`],
    // named by the ordinal: the id has the right shape, the number is out of range
    ['an ordinal over u32', `0x${'ab'.repeat(32)}:4294967296`, 'from 0 to 4294967295, got 4294967296'],
    ['a hex ordinal', `0x${'ab'.repeat(32)}:0x1`],
    ['spaces', ` 0x${'ab'.repeat(32)}:0`],
    ['the block log index form', `0x${'ab'.repeat(32)}/0`],
    ['no ordinal', `0x${'ab'.repeat(32)}`],
    ['a number', 7],
  ];
  for (const [name, id, names = JSON.stringify(id)] of nonCanonical) {
    it(`refuses a request id with ${name}, naming the value`, () => {
      const refused = (err: Error & { code?: string }): boolean =>
        err.code === 'invalid_request' && err.message.includes(names);
      assert.throws(() => requestCommitment([B, id as string]), refused);
      assert.throws(() => commitmentScript([id as string]), refused);
      assert.throws(() => commitsTo(commitmentScript([B]), [id as string]), refused);
    });
  }
});
