import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import {
  BitcoinRpcClient,
  BitcoinRpcError,
  classifyRpcError,
  feeRateFromNode,
  btcToSats,
  rawDescriptor,
  type BitcoinRpcErrorCode,
} from '../../../src/chain/rpc.js';
import { tempDir } from '../../support/tempdir.js';

/**
 * HTTP protocol tests of our client against a small JSON-RPC server written here: what goes on
 * the wire (auth, body) and what the client makes of what comes back (errors, drops, hangs).
 */

interface Seen {
  method: string;
  params: unknown[];
  authorization: string | undefined;
  socket: Socket;
}

type Reply = (seen: Seen, req: http.IncomingMessage, res: http.ServerResponse, id: unknown) => void;

function json(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

const ok =
  (result: unknown): Reply =>
  (_seen, _req, res, id) =>
    json(res, 200, { result, error: null, id });
// Bitcoin Core (legacy JSON-RPC 1.0 replies) answers RPC errors with HTTP 500 and a JSON body.
const rpcError =
  (code: number, message: string): Reply =>
  (_seen, _req, res, id) =>
    json(res, 500, { result: null, error: { code, message }, id });

const PASSWORD = 'hunter2-very-secret';
let server: http.Server;
let url: string;
let seen: Seen[] = [];
let replies: Reply[] = [];
const hanging = new Set<http.ServerResponse>();

function script(...next: Reply[]): void {
  seen = [];
  replies = next;
}

function expectCode(code: BitcoinRpcErrorCode, rpcCode?: number) {
  return (err: unknown) => {
    assert.ok(err instanceof BitcoinRpcError, `expected BitcoinRpcError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.domain, 'bitcoin-rpc');
    if (rpcCode !== undefined) assert.equal(err.rpcCode, rpcCode);
    const shown = `${err.message} ${JSON.stringify(err.toJSON())}`;
    assert.ok(!shown.includes(PASSWORD), 'the password never appears in an error');
    return true;
  };
}

before(async () => {
  server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        method: string;
        params: unknown[];
        id: unknown;
      };
      const entry: Seen = {
        method: body.method,
        params: body.params,
        authorization: req.headers.authorization,
        socket: req.socket,
      };
      seen.push(entry);
      const reply = replies.length > 1 ? replies.shift() : replies[0];
      assert.ok(reply, 'test scripted no reply');
      reply(entry, req, res, body.id);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  for (const res of hanging) res.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe('BitcoinRpcClient over HTTP', () => {
  test('sends a JSON-RPC POST with basic auth and reuses one keep-alive connection', async (t) => {
    const client = new BitcoinRpcClient({ url, auth: { user: 'alice', password: PASSWORD } });
    t.after(() => client.close());
    script(ok(812_345));
    assert.equal(await client.getBlockCount(), 812_345);
    script(ok('00'.repeat(32)));
    await client.getBlockHash(7);
    await client.getBlockHash(8);
    assert.deepEqual(
      seen.map((s) => [s.method, s.params]),
      [
        ['getblockhash', [7]],
        ['getblockhash', [8]],
      ],
    );
    assert.equal(seen[0]?.authorization, `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`);
    assert.equal(seen[0]?.socket, seen[1]?.socket, 'second call reused the first connection');
  });

  test('user info in the URL becomes auth and never shows in errors', async (t) => {
    const client = new BitcoinRpcClient({ url: url.replace('http://', `http://bob:${PASSWORD}@`), retries: 0 });
    t.after(() => client.close());
    assert.ok(!client.where.includes(PASSWORD));
    script(rpcError(-8, 'Block height out of range'));
    await assert.rejects(client.getBlockHash(10 ** 7), expectCode('not_found', -8));
    assert.equal(seen[0]?.authorization, `Basic ${Buffer.from(`bob:${PASSWORD}`).toString('base64')}`);
  });

  test('cookie auth: reads the cookie file, rereads it once when the node answers 401', async (t) => {
    const dir = await tempDir(t, 'cookie');
    const cookieFile = path.join(dir, '.cookie');
    await writeFile(cookieFile, `__cookie__:${PASSWORD}-old`);
    const client = new BitcoinRpcClient({ url, auth: { cookieFile } });
    t.after(() => client.close());
    const expected = (secret: string) => `Basic ${Buffer.from(`__cookie__:${secret}`).toString('base64')}`;
    const cookieCheck: Reply = (s, req, res, id) => {
      if (s.authorization === expected(`${PASSWORD}-new`)) ok(true)(s, req, res, id);
      else {
        res.writeHead(401);
        res.end();
      }
    };
    script(cookieCheck);
    await assert.rejects(client.getBlockCount(), expectCode('unauthorized'));
    assert.equal(seen.length, 2, 'one retry with a reread cookie, then the refusal is final');
    await writeFile(cookieFile, `__cookie__:${PASSWORD}-new\n`);
    script(cookieCheck);
    assert.equal(await client.getBlockCount(), true);

    const missing = new BitcoinRpcClient({ url, auth: { cookieFile: path.join(dir, 'absent') } });
    t.after(() => missing.close());
    await assert.rejects(missing.getBlockCount(), expectCode('config'));
  });

  test('transport failures are retried with backoff; RPC errors are not', async (t) => {
    const client = new BitcoinRpcClient({ url, retries: 3, backoffMs: 5, maxBackoffMs: 20 });
    t.after(() => client.close());
    const drop: Reply = (_s, req) => req.socket.destroy();
    const busy: Reply = (_s, _req, res) => {
      res.writeHead(503);
      res.end('Work queue depth exceeded');
    };
    script(drop, busy, drop, ok(5));
    assert.equal(await client.getBlockCount(), 5);
    assert.equal(seen.length, 4);

    script(drop);
    await assert.rejects(
      client.getBlockCount(),
      (err) => expectCode('transport')(err) && (err as BitcoinRpcError).details?.attempts === 4,
    );
    assert.equal(seen.length, 4, 'first attempt plus three retries');

    script(rpcError(-26, 'min relay fee not met, 100 < 141'));
    await assert.rejects(client.sendRawTransaction('00'), expectCode('insufficient_fee', -26));
    assert.equal(seen.length, 1, 'an answer from the node is never retried');
  });

  test('a call with no answer times out per attempt and ends as timeout', async (t) => {
    const client = new BitcoinRpcClient({ url, retries: 1, timeoutMs: 150, backoffMs: 1 });
    t.after(() => client.close());
    script((_s, _req, res) => hanging.add(res));
    await assert.rejects(client.getBlockchainInfo(), expectCode('timeout'));
    assert.equal(seen.length, 2);
  });

  test('a refused connection is a transport error naming the node', async (t) => {
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const client = new BitcoinRpcClient({ url: `http://127.0.0.1:${port}`, retries: 1, backoffMs: 1 });
    t.after(() => client.close());
    await assert.rejects(
      client.getBlockCount(),
      (err) => expectCode('transport')(err) && (err as Error).message.includes(`127.0.0.1:${port}`),
    );
  });

  test('malformed answers are typed, not crashes', async (t) => {
    const client = new BitcoinRpcClient({ url, retries: 0 });
    t.after(() => client.close());
    const raw =
      (status: number, text: string): Reply =>
      (_s, _req, res) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(text);
      };
    script(raw(200, '{"result": 1, "error": null, "id": '));
    await assert.rejects(client.getBlockCount(), expectCode('malformed_response'));
    script(raw(200, '[1,2,3]'));
    await assert.rejects(client.getBlockCount(), expectCode('malformed_response'));
    script(raw(200, JSON.stringify({ result: 1, error: null, id: 'someone-else' })));
    await assert.rejects(client.getBlockCount(), expectCode('malformed_response'));
    script(raw(500, JSON.stringify({ result: null, error: { code: 'x' }, id: null })));
    await assert.rejects(client.getBlockCount(), expectCode('malformed_response'));
    script(raw(502, '<html>bad gateway</html>'));
    await assert.rejects(client.getBlockCount(), expectCode('http_status'));
    script(rpcError(-32601, 'Method not found'));
    await assert.rejects(client.call('nosuchmethod'), expectCode('rpc_error', -32601));
  });

  test('an answer over the size cap is refused as it arrives, once, naming the cap', async (t) => {
    const client = new BitcoinRpcClient({ url, retries: 3, backoffMs: 1, maxResponseBytes: 1024 * 1024 });
    t.after(() => client.close());
    // what scantxoutset answers for a federation address sent tens of thousands of outputs
    script((_seen, _req, res, id) =>
      json(res, 200, { result: { unspents: Array(100_000).fill({ amount: 0.00000546 }) }, error: null, id }),
    );
    await assert.rejects(
      client.call('scantxoutset', ['start', []]),
      (err: unknown) => expectCode('answer_too_large')(err) && (err as Error).message.includes('1048576'),
    );
    assert.equal(seen.length, 1, 'not asked again: the same answer would come back');
  });

  test('broadcast counts already-in-mempool and already-in-chain as success, other refusals are typed', async (t) => {
    const client = new BitcoinRpcClient({ url, retries: 0 });
    t.after(() => client.close());
    script(ok('ab'.repeat(32)));
    assert.equal(await client.broadcast('00'), 'accepted');
    script(rpcError(-27, 'Transaction outputs already in utxo set'));
    assert.equal(await client.broadcast('00'), 'already_in_chain');
    script(rpcError(-26, 'txn-already-known'));
    assert.equal(await client.broadcast('00'), 'already_in_mempool');
    script(rpcError(-25, 'bad-txns-inputs-missingorspent'));
    await assert.rejects(client.broadcast('00'), expectCode('missing_inputs', -25));
    script(rpcError(-26, 'insufficient fee, rejecting replacement ab; new feerate 0.00001 <= old feerate 0.00002'));
    await assert.rejects(client.broadcast('00'), expectCode('insufficient_fee', -26));
    script(rpcError(-26, 'non-mandatory-script-verify-flag (Invalid Schnorr signature)'));
    await assert.rejects(client.broadcast('00'), expectCode('tx_rejected', -26));
  });
});

describe('scanTxOutSet', () => {
  const unspent = {
    txid: 'cd'.repeat(32),
    vout: 1,
    scriptPubKey: '5120' + 'ab'.repeat(32),
    desc: 'raw(…)#x',
    amount: 0.1234567,
    coinbase: false,
    height: 101,
    blockhash: 'ef'.repeat(32),
    confirmations: 3,
  };
  const answer = { success: true, txouts: 9, height: 103, bestblock: '01'.repeat(32), unspents: [unspent] };

  test('sends start with the descriptors and returns the outputs in sats, at the tip the scan was made', async (t) => {
    const client = new BitcoinRpcClient({ url, retries: 0 });
    t.after(() => client.close());
    script(ok({ ...answer, total_amount: 0.1234567 }));
    const descriptor = rawDescriptor(Buffer.from(unspent.scriptPubKey, 'hex'));
    assert.equal(descriptor, `raw(${unspent.scriptPubKey})`);
    const scan = await client.scanTxOutSet([descriptor]);
    assert.deepEqual(
      seen.map((s) => [s.method, s.params]),
      [['scantxoutset', ['start', [descriptor]]]],
    );
    assert.deepEqual(scan, {
      height: 103,
      bestblock: '01'.repeat(32),
      outputs: [{ txid: unspent.txid, vout: 1, value: 12_345_670n, scriptPubKey: unspent.scriptPubKey, height: 101 }],
      total: 12_345_670n,
    });
  });

  test('refuses bad arguments before calling, and types what the node answers', async (t) => {
    const client = new BitcoinRpcClient({ url, retries: 0 });
    t.after(() => client.close());
    script(ok(answer));
    await assert.rejects(client.scanTxOutSet([]), expectCode('invalid_argument'));
    await assert.rejects(client.scanTxOutSet(['5120ab']), expectCode('invalid_argument'));
    await assert.rejects(client.scanTxOutSet(['raw(51) raw(52)']), expectCode('invalid_argument'));
    assert.throws(() => rawDescriptor(new Uint8Array(0)), expectCode('invalid_argument'));
    assert.equal(seen.length, 0, 'nothing was sent');
    script(rpcError(-8, 'Scan already in progress, use action "abort" or "status"'));
    await assert.rejects(client.scanTxOutSet(['raw(51)']), expectCode('rpc_error', -8));
    script(ok({ ...answer, success: false }));
    await assert.rejects(client.scanTxOutSet(['raw(51)']), expectCode('malformed_response'));
    script(ok({ ...answer, unspents: [{ ...unspent, amount: '0.1' }] }));
    await assert.rejects(client.scanTxOutSet(['raw(51)']), expectCode('malformed_response'));
    script(ok({ ...answer, bestblock: undefined }));
    assert.equal((await client.scanTxOutSet(['raw(51)#abcdefgh'])).bestblock, undefined, 'an old node: no tip hash');
  });
});

describe('classifyRpcError', () => {
  const cases: [number, string, BitcoinRpcErrorCode][] = [
    [-27, 'Transaction already in block chain', 'already_in_chain'],
    [-26, 'txn-already-in-mempool', 'already_in_mempool'],
    [-26, 'txn-same-nonwitness-data-in-mempool', 'already_in_mempool'],
    [-25, 'Missing inputs', 'missing_inputs'],
    [-25, 'Inputs missing or spent', 'missing_inputs'],
    [-26, 'bad-txns-inputs-missingorspent', 'missing_inputs'],
    [-26, 'mempool min fee not met, 100 < 200', 'insufficient_fee'],
    [-26, 'txn-mempool-conflict', 'mempool_conflict'],
    [-25, 'Fee exceeds maximum configured by user (e.g. -maxtxfee, maxfeerate)', 'max_fee_exceeded'],
    [-5, 'No such mempool or blockchain transaction. Use gettransaction for wallet transactions.', 'not_found'],
    [-5, 'Transaction not in mempool', 'not_found'],
    [-5, 'Invalid address', 'rpc_error'],
    [-28, 'Loading block index…', 'warming_up'],
    [-25, 'something else', 'rpc_error'],
    [-1, 'whatever', 'rpc_error'],
  ];
  for (const [code, message, expected] of cases) {
    test(`${code} ${message} → ${expected}`, () => assert.equal(classifyRpcError(code, message), expected));
  }
});

describe('feeRateFromNode', () => {
  const policy = { confTarget: 6, maxSatPerVb: 50 };
  test('estimate in BTC/kvB becomes sat/vB (× 1e5)', () => {
    const rate = feeRateFromNode({ feerate: 0.00012345, blocks: 6 }, 0.00001, policy);
    assert.deepEqual(rate, {
      satPerKvb: 12345,
      satPerVb: 12.345,
      source: 'estimate',
      flooredAtRelay: false,
      capped: false,
      floorSatPerVb: 1,
    });
  });
  test('no estimate (errors field) falls back to 2 sat/vB, or the configured fallback', () => {
    const none = { errors: ['Insufficient data or no feerate found'], blocks: 0 };
    assert.deepEqual(feeRateFromNode(none, 0.00001, policy), {
      satPerKvb: 2000,
      satPerVb: 2,
      source: 'fallback',
      flooredAtRelay: false,
      capped: false,
      floorSatPerVb: 1,
    });
    assert.equal(feeRateFromNode(none, 0.00001, { ...policy, fallbackSatPerVb: 5 }).satPerVb, 5);
  });
  test('floored at the node relay fee, capped at the configured maximum', () => {
    const low = feeRateFromNode({ feerate: 0.000005, blocks: 2 }, 0.00001, policy);
    assert.equal(low.satPerVb, 1);
    assert.equal(low.flooredAtRelay, true);
    const fallbackLow = feeRateFromNode({ errors: ['x'], blocks: 0 }, 0.00003, policy);
    assert.deepEqual([fallbackLow.satPerVb, fallbackLow.flooredAtRelay], [3, true]);
    const high = feeRateFromNode({ feerate: 0.01, blocks: 1 }, 0.00001, policy);
    assert.deepEqual([high.satPerVb, high.capped], [50, true]);
  });
  test('a maximum below the relay fee is a configuration error', () => {
    assert.throws(() => feeRateFromNode({ feerate: 0.0001, blocks: 1 }, 0.001, policy), expectCode('config'));
  });
  test('btcToSats is exact for printed amounts', () => {
    assert.equal(btcToSats(0.00000001), 1n);
    assert.equal(btcToSats(20999999.9769), 2_099_999_997_690_000n);
    assert.equal(btcToSats(0.1 + 0.2), 30_000_000n);
    assert.throws(() => btcToSats(-1), expectCode('malformed_response'));
  });
});
