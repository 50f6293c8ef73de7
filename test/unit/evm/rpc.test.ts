import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { EvmRpc } from '../../../src/evm/rpc.js';
import { evmNode as node } from '../../support/evm-node.js';

// The EVM node's JSON-RPC client against a local HTTP server that answers as told: what each kind
// of answer becomes, the deadline, and one kept-alive connection for a member's steady polling.

const json = (res: ServerResponse, value: unknown): void => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
};

describe('EVM JSON-RPC client', () => {
  it('sends the method and params and returns the result, over one kept-alive connection', async (t) => {
    const seen: string[] = [];
    const { url, sockets } = await node(t, (body, res) => {
      seen.push(`${body.method}(${JSON.stringify(body.params)})`);
      json(res, { jsonrpc: '2.0', id: body.id, result: { echo: body.params } });
    });
    const rpc = new EvmRpc(url);
    for (let i = 0; i < 5; i++) assert.deepEqual(await rpc.call('eth_test', [i, 'x']), { echo: [i, 'x'] });
    assert.deepEqual(
      seen,
      [0, 1, 2, 3, 4].map((i) => `eth_test([${i},"x"])`),
    );
    assert.equal(sockets(), 1);
  });

  it("returns the node's JSON-RPC error at once as rpc_error with its code (no retry)", async (t) => {
    let calls = 0;
    const { url } = await node(t, (body, res) => {
      calls++;
      json(res, {
        jsonrpc: '2.0',
        id: body.id,
        error: { code: -32005, message: 'query returned more than 10000 results' },
      });
    });
    await assert.rejects(new EvmRpc(url, { retries: 3, backoffMs: 1 }).call('eth_getLogs', []), (err: Error) => {
      assert.equal((err as { code?: string }).code, 'rpc_error');
      assert.match(err.message, /eth_getLogs: node answered -32005 query returned more than 10000 results/);
      return true;
    });
    assert.equal(calls, 1);
  });

  it('retries an answer that is not JSON, then refuses it as rpc_malformed naming the HTTP status', async (t) => {
    let calls = 0;
    const { url } = await node(t, (_body, res) => {
      calls++;
      res.writeHead(502);
      res.end('<html>bad gateway</html>');
    });
    await assert.rejects(new EvmRpc(url, { retries: 2, backoffMs: 1 }).call('eth_blockNumber'), {
      code: 'rpc_malformed',
      message: /eth_blockNumber: malformed JSON-RPC answer \(HTTP 502, body is not JSON\)/,
    });
    assert.equal(calls, 3);
  });

  it('gives up on a node that does not answer within the deadline: rpc_timeout', async (t) => {
    const { url } = await node(t, () => {
      // never answers
    });
    const started = Date.now();
    await assert.rejects(new EvmRpc(url, { timeoutMs: 200, retries: 0 }).call('eth_blockNumber'), {
      code: 'rpc_timeout',
      message: new RegExp(`eth_blockNumber: no answer from ${url} within 200 ms`),
    });
    assert.ok(Date.now() - started < 5_000);
  });

  it('says which node it cannot reach: rpc_unreachable', async (t) => {
    // a port that was just free: nothing listens there
    const { url } = await node(t, () => {});
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    assert.notEqual(url, `http://127.0.0.1:${port}`);
    await assert.rejects(new EvmRpc(`http://127.0.0.1:${port}`, { retries: 0 }).call('eth_blockNumber'), {
      code: 'rpc_unreachable',
      message: new RegExp(`eth_blockNumber: cannot reach http://127.0.0.1:${port}: .*ECONNREFUSED`),
    });
  });

  // a hosted node's URL carries a password or an API key (often in the path: /v2/<key>), and the
  // observer logs these messages
  it('shows only the origin of its URL when it cannot reach the node: no user info, path or query', async () => {
    await assert.rejects(
      new EvmRpc('http://user:SECRETPW@127.0.0.1:1/v2/APIKEY123?key=QUERYKEY', { retries: 0 }).call('eth_blockNumber'),
      (err: Error) => {
        assert.equal((err as { code?: string }).code, 'rpc_unreachable');
        assert.match(err.message, /eth_blockNumber: cannot reach http:\/\/127\.0\.0\.1:1: /);
        for (const secret of ['SECRETPW', 'APIKEY123', 'QUERYKEY', 'user'])
          assert.ok(!err.message.includes(secret), secret);
        return true;
      },
    );
  });

  it("sends the URL's user info as basic auth, and a timeout names only the node's origin", async (t) => {
    const authorizations: (string | undefined)[] = [];
    const { url } = await node(t, (body, res, req) => {
      authorizations.push(req.headers.authorization);
      if (body.method === 'eth_blockNumber') return json(res, { jsonrpc: '2.0', id: body.id, result: '0x1' });
      // eth_hang: never answers
    });
    const rpc = new EvmRpc(`${url.replace('http://', 'http://us%40er:SECRET%3APW@')}/v2/APIKEY123`, {
      timeoutMs: 200,
      retries: 0,
    });
    assert.equal(await rpc.call('eth_blockNumber'), '0x1');
    assert.equal(authorizations[0], `Basic ${Buffer.from('us@er:SECRET:PW').toString('base64')}`);
    await assert.rejects(rpc.call('eth_hang'), (err: Error) => {
      assert.equal((err as { code?: string }).code, 'rpc_timeout');
      assert.equal(err.message, `eth_hang: no answer from ${url} within 200 ms`);
      return true;
    });
  });
});
