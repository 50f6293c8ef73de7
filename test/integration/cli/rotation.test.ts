import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { parseTx, serializeTx } from '../../../src/bitcoin/tx.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { BITCOIND, NO_BITCOIND, startRegtest, type Regtest } from '../../support/bitcoind.js';
import { repoRoot } from '../../support/paths.js';
import { tempDir } from '../../support/tempdir.js';

// The membership change done offline (issue 17's ceremony path): a 2-of-3 federation hands its
// funds to a 3-of-4 (one member replaced, two added) through `pegout rotation` and `pegout sign
// --plan`, which refuses anything but a handoff under the plan.

function pegout(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'pegout.js'), ...args], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function ok(args: string[]): string {
  const r = pegout(args);
  assert.equal(r.status, 0, `pegout ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}

function refused(args: string[], message: RegExp): void {
  const r = pegout(args);
  assert.notEqual(r.status, 0, `pegout ${args.join(' ')} should have been refused`);
  assert.match(r.stderr, message);
  // besides what a spend to sign does, shown before anything is checked
  assert.equal(
    r.stderr
      .trim()
      .split('\n')
      .filter((line) => !line.startsWith('spend: ')).length,
    1,
    r.stderr,
  );
}

interface BuiltTx {
  kind: string;
  txid: string;
  tx: string;
  prevouts: { value: number; scriptPubKey: string }[];
  fee: number;
  sent: number;
  kept: number;
}

describe('rotation through the CLI: plan, status, sweep, sign --plan', async () => {
  const dir = await tempDir({ after }, 'rotation');
  const file = (name: string): string => path.join(dir, name);
  const keys: string[] = [];
  const pubkeys: string[] = [];
  for (let i = 1; i <= 6; i++) {
    keys.push(file(`m${i}.key`));
    pubkeys.push(JSON.parse(ok(['keygen', '--out', keys[i - 1]!, '--json'])).pubkey);
  }
  const fedFile = (name: string, t: number, members: number[]): string => {
    const f = file(name);
    ok([
      'federation',
      '--network',
      'regtest',
      '--threshold',
      String(t),
      '--out',
      f,
      '--pubkey',
      ...members.map((m) => pubkeys[m - 1]!),
    ]);
    return f;
  };
  const OLD = fedFile('old.json', 2, [1, 2, 3]);
  const NEW = fedFile('new.json', 3, [1, 2, 4, 5]);
  const OTHER = fedFile('other.json', 3, [1, 2, 4, 6]);
  const describeFed = (f: string): { address: string; scriptPubKey: string } =>
    JSON.parse(
      ok([
        'federation',
        '--network',
        'regtest',
        '--pubkey',
        ...JSON.parse(readFileSync(f, 'utf8')).pubkeys,
        '--threshold',
        String(JSON.parse(readFileSync(f, 'utf8')).threshold),
        '--json',
      ]),
    );
  const oldFed = describeFed(OLD);
  const newFed = describeFed(NEW);

  const planFile = (name: string, to: string, height: number): string => {
    const f = file(name);
    ok([
      'rotation',
      'plan',
      '--from',
      OLD,
      '--to',
      to,
      '--activation-height',
      String(height),
      '--evm-boundary',
      '1',
      '--out',
      f,
    ]);
    return f;
  };
  const PLAN = planFile('plan.json', NEW, 100);
  const OTHER_PLAN = planFile('other-plan.json', OTHER, 100);
  /** The fingerprint the members read to each other, as `rotation status` shows it. */
  const fingerprintOf = (plan: string): string =>
    JSON.parse(ok(['rotation', 'status', '--plan', plan, '--json'])).fingerprint as string;
  const FINGERPRINT = fingerprintOf(PLAN);

  /** Writes a transaction's prevouts and has `signers` sign it under `plan`; returns their signature files. */
  function sign(t: BuiltTx, federation: string, signers: number[], extra: string[] = []): string[] {
    const prevouts = file(`${t.txid}.prevouts.json`);
    writeFileSync(prevouts, JSON.stringify(t.prevouts));
    return signers.map((m) => {
      const out = ok([
        'sign',
        '--federation',
        federation,
        '--key',
        keys[m - 1]!,
        '--tx',
        t.tx,
        '--prevouts',
        prevouts,
        '--plan',
        PLAN,
        '--fingerprint',
        FINGERPRINT,
        ...extra,
      ]);
      const f = file(`${t.txid}.m${m}.sigs.json`);
      writeFileSync(f, out);
      return f;
    });
  }

  function finalize(t: BuiltTx, federation: string, sigs: string[]): string {
    return ok([
      'finalize',
      '--federation',
      federation,
      '--tx',
      t.tx,
      '--prevouts',
      file(`${t.txid}.prevouts.json`),
      '--signatures',
      ...sigs,
    ]).trim();
  }

  function sweep(utxos: unknown, extra: string[] = []): { transactions: BuiltTx[]; left: unknown[] } {
    const f = file(`utxos-${Math.random().toString(16).slice(2)}.json`);
    writeFileSync(f, JSON.stringify(utxos));
    return JSON.parse(ok(['rotation', 'sweep', '--plan', PLAN, '--utxos', f, '--fee-rate', '2', ...extra]));
  }

  it('plan shows both federations with f and liveness, and the fingerprint every member compares', () => {
    const plan = JSON.parse(ok(['rotation', 'status', '--plan', PLAN, '--json']));
    assert.match(plan.fingerprint, /^[0-9a-f]{64}$/);
    assert.equal(plan.from.address, oldFed.address);
    assert.equal(plan.to.address, newFed.address);
    assert.match(plan.from.faultTolerance, /^2-of-3: tolerates NO malicious member/);
    assert.match(plan.to.faultTolerance, /^3-of-4: up to 1 malicious member/);
    assert.match(plan.state, /give --bitcoin-rpc/);
    assert.notEqual(
      JSON.parse(ok(['rotation', 'status', '--plan', OTHER_PLAN, '--json'])).fingerprint,
      plan.fingerprint,
    );
    refused(
      [
        'rotation',
        'plan',
        '--from',
        OLD,
        '--to',
        NEW,
        '--activation-height',
        '100',
        '--evm-boundary',
        '1',
        '--out',
        PLAN,
      ],
      /already exists; a plan is never overwritten/,
    );
    refused(
      ['rotation', 'plan', '--from', OLD, '--to', OLD, '--activation-height', '100', '--evm-boundary', '1'],
      /invalid_plan: .*is the old federation itself/,
    );
    refused(
      ['rotation', 'plan', '--from', OLD, '--to', NEW, '--activation-height', 'soon', '--evm-boundary', '1'],
      /--activation-height must be an integer/,
    );
    const weak = fedFile('weak.json', 2, [1, 2, 4, 5]);
    refused(
      ['rotation', 'plan', '--from', OLD, '--to', weak, '--activation-height', '100', '--evm-boundary', '1'],
      /to\.threshold leaves f < 0/,
    );
  });

  it('plan names the option and the file a faulty federation file came from', () => {
    const points = ['--activation-height', '100', '--evm-boundary', '1'];
    const written = (name: string, content: unknown): string => {
      writeFileSync(file(name), JSON.stringify(content));
      return file(name);
    };
    const twice = written('twice.json', {
      network: 'regtest',
      threshold: 3,
      pubkeys: [...pubkeys.slice(0, 4), pubkeys[1]],
    });
    refused(
      ['rotation', 'plan', '--from', OLD, '--to', twice, ...points],
      new RegExp(`^pegout: invalid_federation: --to ${twice}: member key ${pubkeys[1]} appears twice\n$`),
    );
    refused(
      ['rotation', 'plan', '--from', twice, '--to', NEW, ...points],
      new RegExp(`^pegout: invalid_federation: --from ${twice}: member key ${pubkeys[1]} appears twice\n$`),
    );
    const listed = written('listed.json', { network: ['regtest'], threshold: 3, pubkeys: pubkeys.slice(0, 4) });
    refused(
      ['rotation', 'plan', '--from', OLD, '--to', listed, ...points],
      new RegExp(`^pegout: invalid_federation: --to ${listed}: network must be a JSON string, got \\["regtest"\\]\n$`),
    );
  });

  describe('a sweep no honest member signs', () => {
    const utxo = { txid: 'ab'.repeat(32), vout: 0, value: 5_000_000 };
    let built: BuiltTx;
    before(() => {
      [built] = sweep([utxo]).transactions as [BuiltTx];
    });
    /** `pegout sign --plan` of `tx` (the sweep built, unless given) must be refused with `message`. */
    function signRefused(
      o: { tx?: string; federation?: string; key?: string; plan?: string; fingerprint?: string[]; extra?: string[] },
      message: RegExp,
    ): void {
      const prevouts = file(`refused-${Math.random().toString(16).slice(2)}.prevouts.json`);
      writeFileSync(prevouts, JSON.stringify(built.prevouts));
      const args = ['sign', '--federation', o.federation ?? OLD, '--key', o.key ?? keys[0]!, '--tx', o.tx ?? built.tx];
      const plan = o.plan ?? PLAN;
      const agreed = o.fingerprint ?? ['--fingerprint', fingerprintOf(plan)];
      refused([...args, '--prevouts', prevouts, '--plan', plan, ...agreed, ...(o.extra ?? [])], message);
    }

    // a plan file swapped after the members read its fingerprint to each other, or a sweep handed out
    // as the test spend (nothing has yet proven that the new set can sign): the key is never read
    it('under a plan file that is not the one the members agreed: refused', () => {
      signRefused(
        { key: file('absent.key'), fingerprint: [] },
        /usage: --plan needs --fingerprint <hex>: the plan's fingerprint as the members agreed it/,
      );
      signRefused(
        { key: file('absent.key'), plan: OTHER_PLAN, fingerprint: ['--fingerprint', FINGERPRINT] },
        new RegExp(`--plan .*other-plan.json: its fingerprint [0-9a-f]{64} is not the agreed ${FINGERPRINT}`),
      );
      // a prefix is not enough: 16 digits are 64 bits, which another plan's unused fields can be ground to match
      signRefused(
        { key: file('absent.key'), fingerprint: ['--fingerprint', FINGERPRINT.slice(0, 16)] },
        /--fingerprint [0-9a-f]{16}: expected the plan's whole fingerprint, 64 hex digits/,
      );
    });

    it('sending more to the new federation than --max-sent: refused', () =>
      signRefused(
        { key: file('absent.key'), extra: ['--max-sent', '100000'] },
        new RegExp(`handoff_over_max_sent: it sends ${built.sent} sats to the new federation, over --max-sent 100000`),
      ));

    it('to an unplanned address: refused, and the key is never read', () => {
      const tx = parseTx(Buffer.from(built.tx, 'hex'));
      const thief = { value: tx.outputs[1]!.value, scriptPubKey: witnessScript(1, new Uint8Array(32).fill(9)) };
      const stolen = toHex(serializeTx({ ...tx, outputs: [tx.outputs[0]!, thief] }));
      // a key file that cannot be read: refusing first means the secret is never touched
      signRefused(
        { tx: stolen, key: file('absent.key') },
        /invalid_proposal: not a handoff under plan [0-9a-f]{16}…: unplanned_destination: output 1 pays a script that is not the planned address/,
      );
    });

    it('by a member whose plan differs: refused', () =>
      signRefused(
        { plan: OTHER_PLAN },
        /unplanned_destination: output 1 pays a script that is not the planned address/,
      ));

    it('with a fee over the cap: refused', () =>
      signRefused({ extra: ['--max-fee', String(built.fee - 1)] }, /handoff_fee_too_high/));

    it('from a federation the plan does not name: refused', () =>
      signRefused(
        { federation: OTHER },
        /does not spend the federation output script|is neither the plan's old federation/,
      ));
  });

  it('sweep refuses bad input, naming the field', () => {
    const f = file('bad-utxos.json');
    writeFileSync(f, JSON.stringify([{ txid: 'zz', vout: 0, value: 1 }]));
    refused(
      ['rotation', 'sweep', '--plan', PLAN, '--utxos', f, '--fee-rate', '2'],
      /--utxos .*\[0\]\.txid must be 64 lowercase hex digits/,
    );
    writeFileSync(f, JSON.stringify([{ txid: 'ab'.repeat(32), vout: 0, value: 1_000_000 }]));
    refused(
      ['rotation', 'sweep', '--plan', PLAN, '--utxos', f, '--fee-rate', 'fast'],
      /--fee-rate must be a fee rate in sat\/vB/,
    );
    refused(
      ['rotation', 'sweep', '--plan', PLAN, '--utxos', f, '--fee-rate', '2', '--spender', 'both'],
      /--spender must be from or to/,
    );
  });

  it('sweep refuses a vout past 2^32 - 1 and a value past 21,000,000 BTC or rounded, naming the field', () => {
    const f = file('out-of-range-utxos.json');
    const utxo = (vout: string, value: string): string =>
      `{"txid": "${'ab'.repeat(32)}", "vout": ${vout}, "value": ${value}}`;
    const cases: [json: string, message: RegExp][] = [
      // 2^32 would wrap to vout 0 and slip past the duplicate check
      [
        `[${utxo('0', '1000000')}, ${utxo('4294967296', '1000000')}]`,
        /\[1\]\.vout must be an integer from 0 to 4294967295, got 4294967296\n$/,
      ],
      [`[${utxo('-1', '1000000')}]`, /\[0\]\.vout must be an integer from 0 to 4294967295, got -1\n$/],
      [
        `[${utxo('0', '2100000000000001')}]`,
        /\[0\]\.value must be an integer number of satoshis from 1 to 2100000000000000 \(21,000,000 BTC\), got 2100000000000001\n$/,
      ],
      [`[${utxo('0', '"2100000000000001"')}]`, /\[0\]\.value must be .* got "2100000000000001"\n$/],
      // above 2^53 JSON.parse rounds: the sats summed would not be the sats written
      [`[${utxo('0', '9007199254740993')}]`, /\[0\]\.value must be .* got 9007199254740992\n$/],
      [`[${utxo('0', '0')}]`, /\[0\]\.value must be .* got 0\n$/],
    ];
    for (const [json, message] of cases) {
      writeFileSync(f, json);
      refused(['rotation', 'sweep', '--plan', PLAN, '--utxos', f, '--fee-rate', '2'], message);
    }
  });

  it('sweep takes the last vout there is and all the bitcoin there is', () => {
    const [built] = sweep(
      [{ txid: 'ab'.repeat(32), vout: 0xffffffff, value: 2_100_000_000_000_000 }],
      ['--max-fee', '100000'],
    ).transactions as [BuiltTx];
    assert.equal(built.prevouts[0]!.value, 2_100_000_000_000_000);
    assert.equal(parseTx(Buffer.from(built.tx, 'hex')).inputs[0]!.vout, 0xffffffff);
  });

  it('--help answers for every rotation command', () => {
    for (const sub of ['plan', 'status', 'sweep'])
      assert.match(ok(['rotation', sub, '--help']), /Usage: pegout rotation/);
  });

  it(
    'regtest: test spend, the new set signs back to itself, every old output swept, a late peg-in swept too; the old address ends empty',
    { skip: BITCOIND === undefined ? NO_BITCOIND : false, timeout: 300_000 },
    async () => {
      const node: Regtest = await startRegtest({ after }, BITCOIND!);
      const rpc = ['--bitcoin-rpc', node.rpcUrl, '--bitcoin-cookie', node.cookieFile];
      const status = (): {
        state: string;
        tip: number;
        old: { sats: number; outputs: unknown[] };
        new: { sats: number; outputs: unknown[] };
      } => JSON.parse(ok(['rotation', 'status', '--plan', PLAN, ...rpc, '--json']));
      const broadcast = async (hex: string): Promise<void> => {
        await node.rpc.call('sendrawtransaction', [hex]);
        await node.mine(1);
      };
      await node.mine(101);
      for (const btc of [0.5, 0.25, 0.125]) await node.rpc.call('sendtoaddress', [oldFed.address, btc]);
      await node.mine(1);
      assert.match(
        status().state,
        /^activated, no test spend yet: the old address holds 87500000 sats in 3 output\(s\)/,
      );

      // 1. the test spend, then the new set's spend of it back to itself
      const test = sweep(status().old.outputs, ['--test-amount', '100000']).transactions[0]!;
      assert.equal(test.kind, 'test');
      await broadcast(finalize(test, OLD, sign(test, OLD, [1, 3], ['--max-sent', '100000'])));
      let now = status();
      assert.match(now.state, /^handing over/);
      assert.equal(now.new.sats, 100_000);
      const back = JSON.parse(
        ok([
          'rotation',
          'sweep',
          '--plan',
          PLAN,
          '--utxos',
          writeJson('test-out.json', now.new.outputs),
          '--fee-rate',
          '2',
          '--spender',
          'to',
        ]),
      ).transactions[0] as BuiltTx;
      await broadcast(finalize(back, NEW, sign(back, NEW, [2, 4, 5])));
      now = status();
      assert.equal(now.new.outputs.length, 1);
      assert.equal(now.new.sats, 100_000 - back.fee);

      // 2. every old output swept; nothing left behind
      const all = sweep(now.old.outputs);
      assert.deepEqual(all.left, []);
      for (const t of all.transactions) await broadcast(finalize(t, OLD, sign(t, OLD, [2, 3])));
      now = status();
      assert.match(now.state, /^done: the old address is empty/);
      assert.equal(now.old.sats, 0);
      const fees = all.transactions.reduce((a, t) => a + t.fee, 0) + test.fee + back.fee;
      assert.equal(now.new.sats, 87_500_000 - fees, 'everything arrived but the fees, and the fees are what was shown');

      // 4. a late peg-in to the old address is swept too
      await node.rpc.call('sendtoaddress', [oldFed.address, 0.01]);
      await node.mine(1);
      assert.match(status().state, /^handing over: the old address still holds 1000000 sats in 1 output/);
      const late = sweep(status().old.outputs).transactions[0]!;
      await broadcast(finalize(late, OLD, sign(late, OLD, [1, 2])));
      now = status();
      assert.match(now.state, /^done/);
      assert.equal(now.new.sats, 87_500_000 + 1_000_000 - fees - late.fee);
    },
  );

  function writeJson(name: string, value: unknown): string {
    writeFileSync(file(name), JSON.stringify(value));
    return file(name);
  }
});
