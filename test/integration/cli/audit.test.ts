import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { decodeAddress } from '../../../src/bitcoin/address.js';
import { fromHex, toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation, federationFile } from '../../../src/bitcoin/federation.js';
import { prevoutsToJson, serializeTx, txid, type Transaction } from '../../../src/bitcoin/tx.js';
import { devnetDestination, sendPegouts } from '../../../src/devnet/requests.js';
import { startAnvil, type Anvil } from '../../../src/evm/anvil.js';
import { BRIDGE_ADDRESS, bridgeInterface } from '../../../src/evm/bridge.js';
import { WEI_PER_SAT } from '../../../src/evm/decider.js';
import { requestId } from '../../../src/evm/request-id.js';
import { EvmRpc, quantity } from '../../../src/evm/rpc.js';
import { commitmentScript } from '../../../src/wallet/commitment.js';
import { buildPayments, type Payment, type PaymentRequest } from '../../../src/wallet/payment.js';
import { repoRoot } from '../../support/paths.js';
import { federationVectors } from '../../support/vectors.js';
import { statedPayees } from '../../support/spends.js';

// `pegout audit` end to end: requests burned on a real anvil, a payment of some of them built and
// signed by the ceremony commands, and the auditor's command reading both chains' data.

const PEGOUT = path.join(repoRoot, 'bin', 'pegout.js');
const SATS = 1_500_000n;
type Run = { status: number | null; stdout: string; stderr: string };
const pegout = (args: string[], env: NodeJS.ProcessEnv = process.env): Run =>
  spawnSync(process.execPath, [PEGOUT, ...args], { encoding: 'utf8', env });
/** For commands that talk to a server in this process: spawnSync would block it. */
const pegoutAsync = (args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> =>
  promisify(execFile)(process.execPath, [PEGOUT, ...args], { env }).then(
    ({ stdout, stderr }) => ({ status: 0, stdout, stderr }),
    (err: { code: number; stdout: string; stderr: string }) => ({
      status: err.code,
      stdout: err.stdout,
      stderr: err.stderr,
    }),
  );
function ok(args: string[]): string {
  const r = pegout(args);
  assert.equal(r.status, 0, `pegout ${args.join(' ')} failed: ${r.stderr}`);
  return r.stdout;
}
/** A refusal: exit 1, one line on stderr with the code. */
function refused(r: Run, code: string, message: RegExp): void {
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`^pegout: ${code}: `));
  assert.match(r.stderr, message);
}

const v = federationVectors()[1]!;
const federation = buildFederation({
  network: 'regtest',
  threshold: v.threshold,
  pubkeys: v.xonlyPubkeys.map((k) => fromHex(k)),
});
const FUNDING = { txid: 'c0'.repeat(32), vout: 1, value: 20_000_000n, scriptPubKey: federation.scriptPubKey };

let anvil: Anvil;
let dir: string;
let fedFile: string;
let prevoutsFile: string;
let head: number;
let payment: Payment;
let signedHex: string;
let rejectedId: string;
/** The paid request of one alike pair, and its unpaid twin (same address, same amount). */
let twin: { paid: string; unpaid: string };

function request(id: string, destination: number): PaymentRequest {
  return { id, scriptPubKey: decodeAddress(devnetDestination(destination), 'regtest').scriptPubKey, sats: SATS };
}

/** The payment signed by t members through the ceremony commands (sign ×2, finalize). */
function sign(tx: Transaction): string {
  const unsigned = toHex(serializeTx(tx));
  const sigFiles = v.spend.signers.map((pubkey) => {
    const i = v.xonlyPubkeys.indexOf(pubkey);
    const keyFile = path.join(dir, `member${i}.key`);
    writeFileSync(keyFile, JSON.stringify({ secretKey: v.secretKeys[i] }), { mode: 0o600 });
    const out = path.join(dir, `sigs${i}.json`);
    writeFileSync(
      out,
      ok([
        'sign',
        '--federation',
        fedFile,
        '--key',
        keyFile,
        '--tx',
        unsigned,
        '--prevouts',
        prevoutsFile,
        ...statedPayees(unsigned, federation),
      ]),
    );
    return out;
  });
  return ok([
    'finalize',
    '--federation',
    fedFile,
    '--tx',
    unsigned,
    '--prevouts',
    prevoutsFile,
    '--signatures',
    ...sigFiles,
  ]).trim();
}

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'pegout-audit-'));
  anvil = await startAnvil();
  ok(['bridge', 'install', '--rpc', anvil.url, '--json']);
  const rpc = new EvmRpc(anvil.url);
  // destinations 0..2, then 0..1 again: two pairs of requests alike in address and amount
  const first = await sendPegouts(rpc, 3, SATS);
  const second = await sendPegouts(rpc, 2, SATS);
  // one request the federation rejects: a mainnet address on a regtest federation
  const [from] = await rpc.call<string[]>('eth_accounts');
  const data = bridgeInterface.encodeFunctionData('requestPegOut', [
    new TextEncoder().encode(devnetDestination(9, 'mainnet')),
  ]);
  const hash = await rpc.call<string>('eth_sendTransaction', [
    { from, to: BRIDGE_ADDRESS, data, value: `0x${(SATS * WEI_PER_SAT).toString(16)}` },
  ]);
  rejectedId = requestId(hash, 0);
  head = quantity(await rpc.call('eth_blockNumber'), 'eth_blockNumber');

  // pay one of each alike pair, so only the commitment tells which one is paid
  const paid = [request(first.ids[0]!, 0), request(first.ids[2]!, 2), request(second.ids[1]!, 1)];
  twin = { paid: first.ids[0]!, unpaid: second.ids[0]! };
  const plan = buildPayments(paid, [FUNDING], 2, federation, { maxOutputs: 10 });
  payment = plan.payments[0]!;
  assert.equal(payment.requestIds.length, 3);
  fedFile = path.join(dir, 'federation.json');
  writeFileSync(fedFile, JSON.stringify(federationFile(federation)));
  prevoutsFile = path.join(dir, 'prevouts.json');
  writeFileSync(prevoutsFile, JSON.stringify(prevoutsToJson(payment.prevouts)));
  signedHex = sign(payment.tx);
});
after(async () => {
  await anvil?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const evm = (): string[] => ['--rpc', anvil.url, '--network', 'regtest'];
const range = (): string[] => ['--from', '0', '--to', String(head)];
const withInputs = (): string[] => ['--federation', fedFile, '--prevouts', prevoutsFile];
const unsignedHex = (tx: Transaction = payment.tx): string => toHex(serializeTx(tx));
const tamper = (index: number, delta: bigint): Transaction => ({
  ...payment.tx,
  outputs: payment.tx.outputs.map((o, i) => (i === index ? { ...o, value: o.value + delta } : o)),
});

interface Report {
  txid: string;
  signed: boolean;
  commitment: { matches: boolean };
  share: string;
  outputs: {
    output: number;
    request: string;
    evmTx: string;
    address: string;
    requested: string;
    paid: string;
    share: string;
    exact: boolean;
  }[];
  change: { output: number; sats: string; checked: boolean; expected: string; toFederation: boolean };
  fee: string;
  feeRate: number;
  verdict: { ok: boolean; faults: { code: string }[] };
}

describe('pegout audit against a real anvil', () => {
  it('finds which requests a signed payment pays from a block range, and finds every output exact', () => {
    const report = JSON.parse(
      ok(['audit', '--tx', signedHex, ...evm(), ...range(), ...withInputs(), '--json']),
    ) as Report;
    assert.equal(report.txid, txid(payment.tx));
    assert.equal(report.signed, true);
    assert.ok(report.commitment.matches);
    assert.deepEqual(
      report.outputs.map((o) => o.request),
      payment.requestIds,
      'the paid one of each alike pair, in output order',
    );
    for (const [i, o] of report.outputs.entries()) {
      assert.equal(o.output, i + 1);
      assert.equal(o.evmTx, o.request.split(':')[0]);
      assert.match(o.address, /^bcrt1q/);
      assert.equal(o.requested, SATS.toString());
      assert.equal(BigInt(o.paid), SATS - payment.feeShare);
      assert.equal(o.share, payment.feeShare.toString());
      assert.ok(o.exact);
    }
    assert.deepEqual(report.change, {
      output: 4,
      sats: '15500000',
      address: federation.address,
      checked: true,
      expected: '15500000',
      toFederation: true,
    });
    assert.equal(report.fee, payment.fee.toString());
    assert.ok(report.feeRate >= 2, `fee rate ${report.feeRate}`);
    assert.deepEqual(report.verdict, { ok: true, faults: [] });
  });

  it('prints each output, the change, the fee and the verdict as text', () => {
    const out = ok(['audit', '--tx', signedHex, ...evm(), ...range(), ...withInputs()]);
    assert.match(out, /^commitment +output 0 = [0-9a-f]{64}: the 3 request\(s\) below, in output order$/m);
    for (const [i, rid] of payment.requestIds.entries()) {
      assert.match(
        out,
        new RegExp(
          `^output ${i + 1} +${rid}  evm tx 0x[0-9a-f]{64}  bcrt1q[0-9a-z]+  requested 1500000  paid ${SATS - payment.feeShare}  share ${payment.feeShare}  exact$`,
          'm',
        ),
      );
    }
    assert.match(
      out,
      /^change +output 4: 15500000 sats to bcrt1p[0-9a-z]+ \(the federation\), exactly Σ inputs 20000000 − Σ requested 4500000$/m,
    );
    assert.match(
      out,
      new RegExp(
        `^fee +${payment.fee} sats = 3 × share ${payment.feeShare} \\+ 0 not borne by the shares, [\\d.]+ sat/vB over \\d+ vB$`,
        'm',
      ),
    );
    assert.match(
      out,
      /^verdict +ok: the commitment matches and every payout is exactly sats − \d+; the change is exact$/m,
    );
    assert.match(
      ok(['audit', '--tx', signedHex, ...evm(), ...range()]),
      /^verdict +ok: .*; the change and the fee are not checked$/m,
    );
  });

  it('checks a claimed list of requests, given in output order or not', () => {
    for (const ids of [payment.requestIds, [...payment.requestIds].reverse()]) {
      const report = JSON.parse(
        ok(['audit', '--tx', signedHex, ...evm(), '--requests', ids.join(','), ...withInputs(), '--json']),
      ) as Report;
      assert.deepEqual(
        report.outputs.map((o) => o.request),
        payment.requestIds,
      );
      assert.ok(report.verdict.ok);
    }
    // without input values: payouts checked, change and fee plainly not
    const out = ok(['audit', '--tx', unsignedHex(), ...evm(), '--requests', payment.requestIds.join(',')]);
    assert.match(
      out,
      /^change +output 4: 15500000 sats to bcrt1p[0-9a-z]+, not checked \(needs the input values and --federation\)$/m,
    );
    assert.match(out, /^fee +unknown: needs the input values/m);
  });

  it('names the output that pays a satoshi short, and exits 1', () => {
    const short = unsignedHex(tamper(2, -1n));
    const r = pegout(['audit', '--tx', short, ...evm(), '--requests', payment.requestIds.join(','), ...withInputs()]);
    refused(
      r,
      'payout_inexact',
      new RegExp(
        `output 2 pays ${SATS - payment.feeShare - 1n} sats for request ${payment.requestIds[1]} of 1500000: a fee share of ${payment.feeShare + 1n}, expected the ${payment.feeShare}`,
      ),
    );
    assert.match(r.stdout, /^output 2 .* NOT EXACT: output 2 pays/m);
    assert.match(r.stdout, /^verdict +FAULTY: 1 fault\(s\): payout_inexact \(output 2\)$/m);
    // from a block range nothing matches an inexact payment: said so, with what to do
    refused(
      pegout(['audit', '--tx', short, ...evm(), ...range()]),
      'no_match',
      /no set of the 5 payable request\(s\) in blocks 0-\d+ is what output 0 commits to.*name the requests with --requests/,
    );
  });

  it('names a commitment to other requests than those paid, and an inexact change', () => {
    // outputs 1 and 2 swapped: each pays its request exactly, but not in the committed order
    const o = payment.tx.outputs;
    const swapped = unsignedHex({ ...payment.tx, outputs: [o[0]!, o[2]!, o[1]!, ...o.slice(3)] });
    const ids = [payment.requestIds[1]!, payment.requestIds[0]!, payment.requestIds[2]!];
    refused(
      pegout(['audit', '--tx', swapped, ...evm(), '--requests', ids.join(',')]),
      'commitment_mismatch',
      /output 0 commits to [0-9a-f]{64}, but the 3 request\(s\) in output order hash to/,
    );
    // an unpaid request of an alike pair named instead of the paid one
    const wrong = payment.requestIds.map((rid) => (rid === twin.paid ? twin.unpaid : rid));
    refused(
      pegout(['audit', '--tx', unsignedHex(), ...evm(), '--requests', wrong.join(',')]),
      'commitment_mismatch',
      /output 0 commits to/,
    );
    refused(
      pegout(['audit', '--tx', unsignedHex(tamper(4, -1000n)), ...evm(), ...range(), ...withInputs()]),
      'change_inexact',
      /output 4 \(change\) pays 15499000 sats, expected exactly 15500000 \(Σ inputs 20000000 − Σ requested 4500000\)/,
    );
  });

  it('refuses input values for a signed payment that its own signatures do not commit to', () => {
    // a file handed to the auditor saying the input holds 1 BTC more than it does: believed, the
    // audit would find a change short by 1 BTC; saying it holds what the payment claims while it
    // holds more (the review's case), the audit found everything exact and the fee a few hundred
    // sats while the rest went to the miners. BIP341 signatures commit to every spent amount
    const lying = path.join(dir, 'lying-prevouts.json');
    writeFileSync(lying, JSON.stringify(prevoutsToJson([{ ...FUNDING, value: FUNDING.value + 100_000_000n }])));
    refused(
      pegout(['audit', '--tx', signedHex, ...evm(), ...range(), '--federation', fedFile, '--prevouts', lying]),
      'prevouts_unsigned',
      /--prevouts .*lying-prevouts\.json: the payment's own signatures do not commit to these input values and scripts/,
    );
    const r = pegout(['audit', '--tx', signedHex, ...evm(), ...range(), '--prevouts', lying]);
    assert.match(r.stderr, /--prevouts with a signed payment needs --federation/);
  });

  it('refuses a payment of a request the federation rejects, and ids with no such request', () => {
    const script = decodeAddress(devnetDestination(9, 'mainnet'), 'mainnet').scriptPubKey;
    const tx = {
      ...payment.tx,
      outputs: [
        { value: 0n, scriptPubKey: commitmentScript([rejectedId]) },
        { value: SATS - 500n, scriptPubKey: script },
      ],
    };
    refused(
      pegout(['audit', '--tx', unsignedHex(tx), ...evm(), '--requests', rejectedId]),
      'request_not_payable',
      /output 1: request 0x[0-9a-f]{64}:0 must not be paid: the federation rejects it \(wrong_network\)/,
    );
    const [hash] = payment.requestIds[0]!.split(':');
    refused(
      pegout(['audit', '--tx', unsignedHex(), ...evm(), '--requests', `${hash}:1`]),
      'unknown_request',
      /transaction 0x[0-9a-f]{64} has 1 RequestPegOut log\(s\) from the bridge .*, so no ordinal 1/,
    );
    refused(
      pegout(['audit', '--tx', unsignedHex(), ...evm(), '--requests', `0x${'ee'.repeat(32)}:0`]),
      'unknown_request',
      /knows no transaction 0xee/,
    );
    refused(
      pegout(['audit', '--tx', unsignedHex(), ...evm(), '--requests', `${hash!.toUpperCase().replace('0X', '0x')}:0`]),
      'invalid_request',
      /request id must be/,
    );
  });

  it('refuses ambiguous or incomplete options with one line', () => {
    const cases: [string[], RegExp][] = [
      [['--tx', unsignedHex(), '--txid', 'ab'.repeat(32), ...range()], /exactly one of --tx HEX or --txid TXID/],
      [['--txid', 'ab'.repeat(32), ...range()], /--txid needs --bitcoin-rpc/],
      [['--tx', unsignedHex()], /exactly one of --requests ID,… or --from N --to M/],
      [['--tx', unsignedHex(), '--from', '0'], /needs both --from and --to/],
      [['--tx', unsignedHex(), ...range(), '--requests', payment.requestIds[0]!], /exactly one of --requests/],
      [
        ['--tx', unsignedHex(), ...range(), '--federation', fedFile, '--network', 'mainnet'],
        /is a regtest federation, but --network is mainnet/,
      ],
    ];
    for (const [args, message] of cases) refused(pegout(['audit', ...evm(), ...args]), 'usage', message);
  });

  it('fetches the payment and the values it spends from a Bitcoin Core node by --txid', async (t) => {
    const id = txid(payment.tx);
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        const call = JSON.parse(body) as { id: number; method: string; params: [string, boolean] };
        seen.push(`${call.method} ${call.params[0]} ${req.headers.authorization ?? 'no auth'}`);
        const result =
          call.params[0] === id
            ? { txid: id, hash: id, hex: signedHex, vin: [], vout: [] }
            : call.params[0] === FUNDING.txid
              ? {
                  txid: FUNDING.txid,
                  hash: FUNDING.txid,
                  vin: [],
                  vout: [{ n: 1, value: 0.2, scriptPubKey: { hex: toHex(federation.scriptPubKey) } }],
                }
              : undefined;
        const answer = result
          ? { result, error: null, id: call.id }
          : { result: null, error: { code: -5, message: 'No such mempool or blockchain transaction' }, id: call.id };
        res.writeHead(result ? 200 : 500, { 'content-type': 'application/json' });
        res.end(JSON.stringify(answer));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const env = { ...process.env, AUDIT_RPC_PASSWORD: 'not-printed' };
    const r = await pegoutAsync(
      [
        'audit',
        '--txid',
        id,
        '--bitcoin-rpc',
        url,
        '--bitcoin-user',
        'auditor',
        '--bitcoin-password-env',
        'AUDIT_RPC_PASSWORD',
        ...evm(),
        ...range(),
        '--federation',
        fedFile,
        '--json',
      ],
      env,
    );
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as Report;
    assert.deepEqual(
      report.outputs.map((o) => o.request),
      payment.requestIds,
    );
    assert.equal(report.fee, payment.fee.toString());
    assert.ok(report.change.checked);
    const auth = `Basic ${Buffer.from('auditor:not-printed').toString('base64')}`;
    assert.deepEqual(seen, [`getrawtransaction ${id} ${auth}`, `getrawtransaction ${FUNDING.txid} ${auth}`]);
    const missing = await pegoutAsync(['audit', '--txid', 'ab'.repeat(32), '--bitcoin-rpc', url, ...evm(), ...range()]);
    assert.equal(missing.status, 1);
    assert.match(
      missing.stderr,
      /^pegout: not_found: getrawtransaction failed on http:\/\/127\.0\.0\.1:\d+: No such mempool or blockchain transaction/,
    );
    assert.ok(!missing.stderr.includes('not-printed'));
  });
});
