import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { decodeAddress, encodeAddress } from '../../../src/bitcoin/address.js';
import { fromHex, toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation, federationFile } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { prevoutsToJson, serializeTx } from '../../../src/bitcoin/tx.js';
import { buildSweeps, makeRotationPlan, rotationPlanFile } from '../../../src/wallet/handoff.js';
import { unsignedSpend } from '../../../src/wallet/payment.js';
import { repoRoot } from '../../support/paths.js';
import { tempDir } from '../../support/tempdir.js';
import { federationVectors } from '../../support/vectors.js';

// `pegout sign` offline: the transaction and its prevouts come from whoever hands them to the
// operator, perhaps a malicious member. The operator trusts their key, their files and what the
// command shows them; the command signs only what they stated, and shows it before the key is read.

const PEGOUT = path.join(repoRoot, 'bin', 'pegout.js');
const pegout = (args: string[]): { status: number | null; stdout: string; stderr: string } => {
  const r = spawnSync(process.execPath, [PEGOUT, ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
};

const v = federationVectors()[1]!; // 2-of-3
const federation = buildFederation({
  network: 'regtest',
  threshold: v.threshold,
  pubkeys: v.xonlyPubkeys.map((k) => fromHex(k)),
});
const COIN = { txid: 'c0'.repeat(32), vout: 1, value: 120_000_000n, scriptPubKey: federation.scriptPubKey };
const user = encodeAddress(witnessScript(0, new Uint8Array(20).fill(5)), 'regtest');
const outsider = encodeAddress(witnessScript(1, new Uint8Array(32).fill(9)), 'regtest');

describe('pegout sign without --plan', async () => {
  const dir = await tempDir({ after }, 'sign');
  const file = (name: string): string => path.join(dir, name);
  const fedFile = file('federation.json');
  writeFileSync(fedFile, JSON.stringify(federationFile(federation)));
  const keyFile = file('member0.key');
  writeFileSync(keyFile, JSON.stringify({ secretKey: v.secretKeys[0] }), { mode: 0o600 });
  const prevouts = file('prevouts.json');
  writeFileSync(prevouts, JSON.stringify(prevoutsToJson([COIN])));
  const spend = (outputs: { value: bigint; to: string }[]): string =>
    toHex(
      serializeTx(
        unsignedSpend(
          [COIN],
          outputs.map((o) => ({
            value: o.value,
            scriptPubKey: o.to === 'federation' ? federation.scriptPubKey : decodeAddress(o.to, 'regtest').scriptPubKey,
          })),
        ),
      ),
    );
  const sign = (tx: string, key: string, extra: string[]) =>
    pegout(['sign', '--federation', fedFile, '--key', key, '--tx', tx, '--prevouts', prevouts, ...extra]);
  // 1.2 BTC: 0.01 BTC to an outsider, the rest to the miners
  const theft = spend([{ value: 1_000_000n, to: outsider }]);
  const payment = spend([
    { value: 30_000_000n, to: user },
    { value: 89_990_000n, to: 'federation' },
  ]);

  it('shows, before the key is read, each output and the fee', () => {
    const r = sign(theft, file('absent.key'), ['--to', outsider, '--max-fee', '200000000']);
    assert.match(r.stderr, new RegExp(`output 0: 1000000 sats to ${outsider}; fee 119000000 sats`));
    assert.match(r.stderr, /absent\.key/, 'then the key file was looked for');
  });

  it('needs the addresses it may pay, and refuses any other, before the key is read', () => {
    assert.match(sign(theft, keyFile, []).stderr, /sign without --plan needs --to <address\.\.\.>/);
    const r = sign(theft, file('absent.key'), ['--to', user]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--tx: output 0 \(1000000 sats, script 5120[0-9a-f]{64}\) pays none of --to/);
    assert.doesNotMatch(r.stderr, /absent\.key/);
  });

  it('refuses a fee over --max-fee (100,000 sats unless given)', () => {
    const r = sign(theft, keyFile, ['--to', outsider]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /--tx: its fee is 119000000 sats, over --max-fee 100000; nothing is signed/);
    assert.equal(r.stdout, '');
  });

  it('signs what was stated: a user paid, the rest back to the federation', () => {
    const r = sign(payment, keyFile, ['--to', user]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).signatures.length, 1);
  });
});

describe('pegout sign --plan', async () => {
  const dir = await tempDir({ after }, 'sign-plan');
  const file = (name: string): string => path.join(dir, name);
  const to = buildFederation({
    network: 'regtest',
    threshold: 2,
    pubkeys: [v.xonlyPubkeys[0]!, v.xonlyPubkeys[1]!].map((k) => fromHex(k)),
  });
  const plan = makeRotationPlan(federation, to, { activationHeight: 100, evmBoundary: 1 }, 'test');
  const planFile = file('plan.json');
  writeFileSync(planFile, JSON.stringify(rotationPlanFile(plan)));
  const fedFile = file('federation.json');
  writeFileSync(fedFile, JSON.stringify(federationFile(federation)));
  const sweep = buildSweeps([{ ...COIN }], 2, plan, federation, 100_000n).sweeps[0]!;
  const prevouts = file('prevouts.json');
  writeFileSync(prevouts, JSON.stringify(prevoutsToJson(sweep.prevouts)));
  const sign = (fingerprint: string, extra: string[] = []) =>
    pegout([
      'sign',
      '--federation',
      fedFile,
      '--key',
      file('absent.key'),
      '--tx',
      toHex(serializeTx(sweep.tx)),
      '--prevouts',
      prevouts,
      '--plan',
      planFile,
      '--fingerprint',
      fingerprint,
      ...extra,
    ]);

  it('names the new federation the funds go to, its address and threshold', () => {
    const r = sign(plan.fingerprint);
    assert.match(r.stderr, new RegExp(`to the new federation \\(2-of-2, ${to.address}\\)`));
  });

  it('takes the whole fingerprint only, and no --to', () => {
    assert.match(sign(plan.fingerprint.slice(0, 16)).stderr, /expected the plan's whole fingerprint, 64 hex digits/);
    assert.match(sign(plan.fingerprint, ['--to', to.address]).stderr, /--to: with --plan the plan names where/);
  });
});
