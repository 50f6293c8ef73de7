import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, it, type TestContext } from 'node:test';
import { Gauge } from 'prom-client';
import { API_LIMITS } from '../../../src/api/limits.js';
import { DEFAULT_LIMIT, lookupCost, MAX_LIMIT } from '../../../src/api/lookup.js';
import { ApiError, startApi, type ApiServer } from '../../../src/api/server.js';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { storeStatusSource } from '../../../src/api/status.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { BitcoinRpcClient } from '../../../src/chain/rpc.js';
import { stageNewRequest, stageStatus } from '../../../src/evm/request-store.js';
import { createMetrics } from '../../../src/metrics/metrics.js';
import { createLogger } from '../../../src/node/log.js';
import { ReserveAuditor } from '../../../src/node/reserves.js';
import { Safety } from '../../../src/node/safety.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { registerUtxo } from '../../../src/wallet/utxos.js';
import { repoRoot } from '../../support/paths.js';
import { openTempStore } from '../../support/tempdir.js';
import { testRequest } from '../../support/requests.js';

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i))),
});
const EVM = `0x${'12'.repeat(20)}`;
const TX = `0x${'ab'.repeat(32)}`;

/** The API over an empty store, closed when the test ends. */
async function emptyStoreApi(
  t: TestContext,
  limits: Partial<typeof API_LIMITS> = {},
  hostnames: readonly string[] = [],
): Promise<ApiServer> {
  const store = await openTempStore(t);
  const api = await startApi({
    host: '127.0.0.1',
    port: 0,
    source: storeStatusSource(store, federation),
    registry: createMetrics().registry,
    limits,
    hostnames,
  });
  t.after(() => api.close());
  return api;
}

describe('HTTP API', () => {
  it('serves health, metrics, a request lifecycle, requests by EVM address, the federation and its reserves; refuses bad input', async (t) => {
    const store = await openTempStore(t);
    await store.exclusive(async () => {
      const batch = store.batch();
      const at = '2026-11-24T00:00:00.000Z';
      const inBlock = { txHash: TX, blockNumber: 7, blockHash: `0x${'cd'.repeat(32)}`, evmAddress: EVM };
      const r = stageNewRequest(
        batch,
        testRequest({
          ...inBlock,
          bitcoinAddress: 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080',
          wei: '20000000000000000',
          sats: 2_000_000n,
        }),
        at,
      );
      stageStatus(batch, r, 'batched', at, 'in payment 00ff');
      stageNewRequest(
        batch,
        testRequest({
          ...inBlock,
          ordinal: 1,
          bitcoinAddress: 'nope',
          wei: '1',
          sats: 0n,
          subSatoshiWei: '1',
          status: 'rejected',
          reason: 'invalid_address',
          detail: 'bad',
        }),
        at,
      );
      await registerUtxo(batch, {
        txid: 'ee'.repeat(32),
        vout: 0,
        value: 5_000_000n,
        scriptPubKey: federation.scriptPubKey,
        height: 1,
        pegIn: true,
      });
      await batch.write({ sync: true });
    });
    const metrics = createMetrics();
    metrics.requests.set({ status: 'accepted' }, 1);
    // without Bitcoin Core: the books, unaudited
    const log = createLogger({ level: 'error', write: () => undefined });
    const reserves = new ReserveAuditor({ store, federation, core: null, safety: new Safety(store, log), log });
    const api = await startApi({
      host: '127.0.0.1',
      port: 0,
      source: storeStatusSource(store, federation, { reserves }),
      registry: metrics.registry,
    });
    t.after(() => api.close());
    // a port already taken is an ApiError naming it (the CLI's exit 1 and one line), not an unexpected failure (70)
    await assert.rejects(
      startApi({
        host: '127.0.0.1',
        port: api.port,
        source: storeStatusSource(store, federation),
        registry: metrics.registry,
      }),
      (err: unknown) =>
        err instanceof ApiError && err.code === 'listen_failed' && err.message.includes(`127.0.0.1:${api.port}`),
    );
    const base = `http://127.0.0.1:${api.port}`;
    // JSON bodies are read loosely; the assertions below check every field used
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- the assertions type each field they read
    const get = async (p: string): Promise<{ status: number; body: any }> => {
      const res = await fetch(`${base}${p}`);
      return {
        status: res.status,
        body: res.headers.get('content-type')?.includes('json') ? await res.json() : await res.text(),
      };
    };

    assert.deepEqual((await get('/health')).body, { ok: true, status: 'ok', components: { store: 'open' } });
    const m = await get('/metrics');
    assert.equal(m.status, 200);
    assert.match(m.body as string, /pegout_requests\{status="accepted"\} 1/);
    const one = await get(`/pegouts/${TX}:0`);
    assert.equal(one.status, 200);
    assert.equal(one.body.status, 'batched');
    assert.deepEqual(
      one.body.history.map((h: { status: string }) => h.status),
      ['accepted', 'batched'],
    );
    const rejected = await get(`/pegouts/${TX}:1`);
    assert.equal(rejected.body.reason, 'invalid_address');
    const list = await get(`/pegouts?evmAddress=${EVM.toUpperCase().replace('0X', '0x')}`);
    assert.equal(list.body.pegouts.length, 2);
    const fed = await get('/federation');
    assert.equal(fed.body.descriptor, federation.descriptor);
    assert.equal(fed.body.balance.unspentSats, '5000000');
    // 2-of-3: any two quorums share a member, but that member may be the one malicious member
    assert.equal(fed.body.faultTolerance.safety, 0);
    assert.equal(fed.body.faultTolerance.liveness, 1);
    assert.match(fed.body.faultTolerance.statement, /^2-of-3: tolerates NO malicious member \(f = 2t − n − 1 = 0\)/);

    const audit = await get('/reserves');
    assert.equal(audit.status, 200);
    assert.equal(audit.body.verdict, 'unaudited');
    assert.deepEqual(audit.body.assets, { sats: '5000000', outputs: 1 });
    assert.deepEqual(audit.body.liabilities.byStatus, { batched: { requests: 1, sats: '2000000' } });
    assert.equal(audit.body.ledger.pegIns, '5000000');

    assert.deepEqual((await get('/pegouts/nope')).body, {
      error: 'bad_request',
      parameter: 'id',
      value: 'nope',
      expected: '<0x tx hash>:<ordinal>',
    });
    assert.equal((await get(`/pegouts/${TX}:9`)).status, 404);
    assert.equal((await get('/pegouts?evmAddress=0x12')).body.parameter, 'evmAddress');
    assert.equal((await get(`/pegouts?evmAddress=${EVM}&limit=0`)).body.parameter, 'limit');
    assert.equal((await get('/elsewhere')).status, 404);

    // lookups: by EVM tx (q is classified), by Bitcoin address, a page at a time
    const byTx = await get(`/pegouts?q=${TX}&limit=1`);
    assert.deepEqual(
      [byTx.body.kind, byTx.body.pegouts.map((p: { id: string }) => p.id), byTx.body.next],
      ['evmTx', [`${TX}:1`], '0000000001'],
    );
    const rest = await get(`/pegouts?evmTx=${TX}&cursor=${byTx.body.next}`);
    assert.deepEqual([rest.body.pegouts.map((p: { id: string }) => p.id), rest.body.next], [[`${TX}:0`], null]);
    assert.match(rest.body.pegouts[0].says, /being signed|signing/);
    const byAddress = await get('/pegouts?bitcoinAddress=nope');
    assert.equal(byAddress.body.pegouts[0].reason, 'invalid_address');
    assert.match(byAddress.body.pegouts[0].says, /bad checksum/);
    assert.deepEqual((await get(`/pegouts?evmTx=${TX}&cursor=..%2Fx`)).body, {
      error: 'bad_request',
      parameter: 'cursor',
      value: '../x',
      expected: 'the `next` value of the previous page',
    });
    assert.equal((await get(`/pegouts?bitcoinTxid=${'aa'.repeat(32)}`)).status, 404);
    const overview = await get('/overview');
    assert.deepEqual(
      overview.body.members.map((m: { link: string }) => m.link),
      ['down', 'down', 'down'],
    );
    assert.deepEqual(overview.body.requests, { batched: 1, rejected: 1 });

    // the pages, with a policy that runs no script but the member's own
    for (const [path, type] of [
      ['/', 'text/html'],
      ['/operator', 'text/html'],
      ['/pages/user.js', 'text/javascript'],
      ['/pages/app.css', 'text/css'],
    ] as const) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 200, path);
      assert.ok(res.headers.get('content-type')?.startsWith(type), path);
      assert.match(res.headers.get('content-security-policy') ?? '', /script-src 'self';/);
    }
    assert.equal((await fetch(`${base}/pages/../status.js`)).status, 404);
    assert.equal((await fetch(`${base}/health`, { method: 'POST' })).status, 405);
    // a request target no URL parser takes is the client's fault, said so
    const raw = connect({ host: '127.0.0.1', port: api.port });
    raw.end('GET http://[::1/health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    let answer = '';
    for await (const chunk of raw) answer += String(chunk);
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.match(answer, /"parameter":"url"/);

    // the status command reads the same lifecycle
    const run = promisify(execFile);
    const { stdout } = await run(process.execPath, [
      path.join(repoRoot, 'bin', 'pegout.js'),
      'status',
      `${TX}:0`,
      '--api',
      base,
      '--json',
    ]);
    assert.equal(JSON.parse(stdout).status, 'batched');
    await assert.rejects(
      run(process.execPath, [path.join(repoRoot, 'bin', 'pegout.js'), 'status', `${TX}:9`, '--api', base]),
      (err: { stderr: string }) => /is not known/.test(err.stderr),
    );
    // and the reserves command the same audit, in lines
    const reservesRun = await run(process.execPath, [
      path.join(repoRoot, 'bin', 'pegout.js'),
      'reserves',
      '--api',
      base,
    ]);
    assert.match(reservesRun.stdout, /^verdict +unaudited: no Bitcoin Core/m);
    assert.match(
      reservesRun.stdout,
      /^liabilities +2000000 sats \(0\.02000000 BTC\) for 1 requests \(batched 1: 2000000\)$/m,
    );
  });

  it('an answer that cannot be written is a 500 and the member goes on serving; it never takes the process down', async (t) => {
    const store = await openTempStore(t);
    const metrics = createMetrics();
    const circular: Record<string, unknown> = {};
    circular.self = circular;
    const source = storeStatusSource(store, federation);
    const failing = {
      ...source,
      // what an answer too large for a string does to JSON.stringify (a RangeError), without building one
      federation: async () => circular,
    };
    metrics.registry.registerMetric(
      new Gauge({
        name: 'test_failing_collect',
        help: 'a collector that throws, as process.memoryUsage() does once descriptors run out',
        collect() {
          throw new Error('EMFILE: too many open files, uv_resident_set_memory');
        },
      }),
    );
    const failures: [string, string][] = [];
    const api = await startApi({
      host: '127.0.0.1',
      port: 0,
      source: failing,
      registry: metrics.registry,
      onError: (path, err) => failures.push([path, err.message]),
    });
    t.after(() => api.close());
    const base = `http://127.0.0.1:${api.port}`;
    for (const path of ['/federation', '/metrics', '/federation']) {
      const res = await fetch(`${base}${path}`);
      assert.equal(res.status, 500, path);
      // what failed is the operator's to read, not the client's: a message may name the member's files
      assert.deepEqual(await res.json(), { error: 'internal' }, path);
    }
    assert.deepEqual(
      failures.map(([path, message]) => [path, message.includes('EMFILE') || message.includes('circular')]),
      [
        ['/federation', true],
        ['/metrics', true],
        ['/federation', true],
      ],
    );
    assert.equal((await fetch(`${base}/health`)).status, 200, 'still serving');
  });

  it('holds few connections from one address and closes a client that never finishes its headers; others are served', async (t) => {
    const api = await emptyStoreApi(t, { headersTimeoutMs: 1000 });
    // 300 connections from one address that send nothing: each is a descriptor the member holds
    const sockets = Array.from({ length: 300 }, () =>
      connect({ host: '127.0.0.1', port: api.port, localAddress: '127.0.0.2' })
        .on('error', () => undefined)
        .resume(),
    );
    t.after(() => sockets.forEach((s) => s.destroy()));
    const closed = (): number => sockets.filter((s) => s.destroyed || s.readyState === 'closed').length;
    await Promise.all(sockets.map((s) => new Promise((resolve) => s.once('connect', resolve).once('close', resolve))));
    await sleep(200);
    const held = sockets.length - closed();
    assert.ok(held <= API_LIMITS.connectionsPerAddress, `${held} connections held from one address`);
    // a client elsewhere is served meanwhile
    assert.equal((await fetch(`http://127.0.0.1:${api.port}/health`)).status, 200);
    // and one that never finishes its headers is closed at the deadline
    const slow = connect({ host: '127.0.0.1', port: api.port, localAddress: '127.0.0.3' })
      .on('error', () => undefined)
      .resume();
    slow.write('GET /health HTTP/1.1\r\nhost: x\r\n');
    const started = Date.now();
    await new Promise((resolve) => slow.once('close', resolve));
    t.diagnostic(`${held} of 300 held; a slow client closed after ${Date.now() - started} ms`);
    assert.ok(Date.now() - started < 5000, 'closed within the headers deadline and one check');
  });

  it('closes a connection that asks again before reading its answer: answers nobody reads are not held', async (t) => {
    // a client pipelining a read's worth of /metrics requests (about 1,600) and never reading held an
    // answer of each in the member's heap, past every deadline: 32 connections from one address
    // about 900 MiB, a few addresses the whole heap
    const metrics = createMetrics({ processMetrics: true });
    const store = await openTempStore(t);
    const api = await startApi({
      host: '127.0.0.1',
      port: 0,
      source: storeStatusSource(store, federation),
      registry: metrics.registry,
      limits: { lookupsPerSecond: 1e6, lookupsPerSecondTotal: 1e6 },
    });
    t.after(() => api.close());
    const one = `GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n`;
    const before = process.memoryUsage().heapUsed;
    const sockets = await Promise.all(
      Array.from({ length: 8 }, async () => {
        const s = connect({ host: '127.0.0.1', port: api.port, localAddress: '127.0.0.9' }).on(
          'error',
          () => undefined,
        );
        t.after(() => s.destroy());
        await new Promise((resolve) => s.once('connect', resolve));
        s.pause();
        s.write(one.repeat(Math.floor(65536 / one.length)));
        return s;
      }),
    );
    await sleep(2000);
    const grown = (process.memoryUsage().heapUsed - before) / 2 ** 20;
    t.diagnostic(`heap +${grown.toFixed(0)} MiB with 8 connections that never read`);
    assert.ok(grown < 64, `the heap grew by ${grown.toFixed(0)} MiB`);
    assert.ok(
      sockets.every((s) => s.destroyed || s.readableEnded),
      'each connection closed',
    );
    assert.equal((await fetch(`http://127.0.0.1:${api.port}/metrics`)).status, 200, 'a client that reads is served');
  });

  it("a failed reserve scan is shown without the RPC cookie file's path or Core's address", async (t) => {
    const store = await openTempStore(t);
    const log = createLogger({ level: 'error', write: () => undefined });
    const cookieFile = '/srv/member-secrets/bitcoind/.cookie';
    // bitcoind writes its cookie at start and deletes it at shutdown: an audit meanwhile reads none
    const core = new BitcoinRpcClient({ url: 'http://10.1.2.3:8332', auth: { cookieFile }, retries: 0 });
    const reserves = new ReserveAuditor({ store, federation, core, safety: new Safety(store, log), log });
    await reserves.audit();
    const api = await startApi({
      host: '127.0.0.1',
      port: 0,
      source: storeStatusSource(store, federation, { reserves }),
      registry: createMetrics().registry,
    });
    t.after(() => api.close());
    const body = await (await fetch(`http://127.0.0.1:${api.port}/reserves`)).text();
    assert.match(body, /Bitcoin Core's scan failed/);
    for (const secret of [cookieFile, 'member-secrets', '10.1.2.3'])
      assert.ok(!body.includes(secret), `${secret}: ${body}`);
  });

  it('answers only requests for a host it is known by: a DNS-rebinding page cannot read a member bound to loopback', async (t) => {
    // a page on rebind.attacker.example whose name the attacker then points at 127.0.0.1 is
    // same-origin with the member's API in the browser; only the Host header still says whom the
    // browser meant
    const api = await emptyStoreApi(t, {}, ['status.federation.example']);
    const get = (host: string | undefined, path = '/federation'): Promise<{ status: number; body: string }> =>
      new Promise((resolve, reject) => {
        const headers = host === undefined ? {} : { host };
        const req = httpRequest({ host: '127.0.0.1', port: api.port, path, headers, agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject).end();
      });
    for (const host of [
      'rebind.attacker.example',
      `rebind.attacker.example:${api.port}`,
      'status.federation.example.evil',
    ]) {
      for (const path of ['/federation', '/pegouts?evmAddress=' + EVM, '/metrics', '/operator']) {
        const { status, body } = await get(host, path);
        assert.equal(status, 421, `${host}${path}`);
        assert.deepEqual(JSON.parse(body), {
          error: 'unknown_host',
          host,
          expected: 'an IP address, localhost, or a name in the config field api.hostnames',
        });
      }
    }
    for (const host of [
      `127.0.0.1:${api.port}`,
      '127.0.0.1',
      `localhost:${api.port}`,
      'LOCALHOST',
      '[::1]:8080',
      'status.federation.example',
      `Status.Federation.Example.:${api.port}`,
    ])
      assert.equal((await get(host)).status, 200, host);
  });

  it("one address's lookups are held to a rate, with 429 and Retry-After past it; other addresses and /health are not", async (t) => {
    const api = await emptyStoreApi(t);
    const from = fromAddress(api);
    // each lookup reads records and the payments of each: 200 of them from one address at once
    const started = performance.now();
    const answers = [];
    for (let i = 0; i < 200; i++) answers.push(await from('127.0.0.2', `/pegouts?evmAddress=${EVM}`));
    const seconds = (performance.now() - started) / 1000;
    const served = answers.filter((a) => a.status === 200 || a.status === 404).length;
    const limited = answers.filter((a) => a.status === 429);
    t.diagnostic(`${served} of 200 lookups served in ${seconds.toFixed(2)} s, ${limited.length} refused`);
    const { lookupsPerSecond } = API_LIMITS;
    assert.ok(served <= lookupsPerSecond * (5 + seconds) + 1, `${served} lookups served`);
    assert.ok(limited.length > 0 && limited.every((a) => a.retry === '1'));
    assert.equal((await from('127.0.0.2', '/health')).status, 200, '/health is not a lookup');
    assert.equal((await from('127.0.0.3', `/pegouts?evmAddress=${EVM}`)).status, 200, 'another address is served');
  });

  it('a page of more records costs as many lookups as default pages would read them', async (t) => {
    // a lookup costs one token however many records its page reads: pages of 100 read five times
    // what pages of 20 do, at the same rate
    const api = await emptyStoreApi(t);
    const from = fromAddress(api);
    const started = performance.now();
    const answers = [];
    for (let i = 0; i < 100; i++)
      answers.push(await from('127.0.0.4', `/pegouts?evmAddress=${EVM}&limit=${MAX_LIMIT}`));
    const seconds = (performance.now() - started) / 1000;
    const served = answers.filter((a) => a.status === 200 || a.status === 404).length;
    t.diagnostic(`${served} of 100 lookups of ${MAX_LIMIT} records served in ${seconds.toFixed(2)} s`);
    const cost = MAX_LIMIT / DEFAULT_LIMIT;
    assert.ok(served <= (API_LIMITS.lookupsPerSecond * (5 + seconds)) / cost + 1, `${served} lookups served`);
    // another address is served
    assert.equal((await from('127.0.0.5', `/pegouts?evmAddress=${EVM}&limit=${MAX_LIMIT}`)).status, 200);
  });

  it('costs a lookup for every default page a limit may hold, and one for a limit refused', () => {
    const cost = (query: string): number => lookupCost(new URLSearchParams(query));
    assert.deepEqual(
      [
        '',
        'limit=1',
        `limit=${DEFAULT_LIMIT}`,
        `limit=${DEFAULT_LIMIT + 1}`,
        `limit=${MAX_LIMIT}`,
        'limit=0',
        'limit=x',
      ].map(cost),
      [1, 1, 1, 2, MAX_LIMIT / DEFAULT_LIMIT, 1, 1],
    );
  });

  it("many addresses' lookups together are held to the member's rate: the store's thread is the signer's", async (t) => {
    // each address stayed within its own burst, and nothing bounded their sum: a client with many
    // addresses (an IPv6 /48 holds 65,536 groups of /64) made the member read records without end on
    // the thread that validates and signs
    const lookupsPerSecondTotal = 20;
    const api = await emptyStoreApi(t, { lookupsPerSecondTotal });
    const from = fromAddress(api);
    const started = performance.now();
    const answers = [];
    for (let i = 0; i < 400; i++) answers.push(await from(`127.0.1.${i % 40}`, `/pegouts?evmAddress=${EVM}`));
    const seconds = (performance.now() - started) / 1000;
    const served = answers.filter((a) => a.status === 200 || a.status === 404).length;
    t.diagnostic(`${served} of 400 lookups from 40 addresses served in ${seconds.toFixed(2)} s`);
    assert.ok(served <= lookupsPerSecondTotal * (5 + seconds) + 1, `${served} lookups served`);
    assert.ok(answers.filter((a) => a.status === 429).every((a) => a.retry === '1'));
    assert.equal((await from('127.0.1.1', '/health')).status, 200, '/health is not a lookup');
  });

  it("pages of more records from many addresses cost the member's rate what they read too", async (t) => {
    // two pages of 100 from each of 200 addresses: each address well inside its own burst, so only the
    // member-wide rate holds them, and it must count each page as the five default pages it reads
    const lookupsPerSecondTotal = 20;
    const api = await emptyStoreApi(t, { lookupsPerSecondTotal });
    const from = fromAddress(api);
    const started = performance.now();
    const answers = [];
    for (let i = 0; i < 400; i++)
      answers.push(await from(`127.0.2.${i % 200}`, `/pegouts?evmAddress=${EVM}&limit=${MAX_LIMIT}`));
    const seconds = (performance.now() - started) / 1000;
    const served = answers.filter((a) => a.status === 200 || a.status === 404).length;
    t.diagnostic(
      `${served} of 400 lookups of ${MAX_LIMIT} records from 200 addresses served in ${seconds.toFixed(2)} s`,
    );
    const cost = MAX_LIMIT / DEFAULT_LIMIT;
    assert.ok(served <= (lookupsPerSecondTotal * (5 + seconds)) / cost + 1, `${served} lookups served`);
  });
});

/** GET `path` from `localAddress` on a connection of its own: the status and Retry-After. */
function fromAddress(api: ApiServer) {
  return (localAddress: string, path: string): Promise<{ status: number; retry: string | undefined }> =>
    new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: api.port, path, localAddress, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, retry: res.headers['retry-after'] }));
      });
      req.on('error', reject).end();
    });
}
