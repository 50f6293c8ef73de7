import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it, type TestContext } from 'node:test';
import { ContractFactory, JsonRpcProvider, Wallet, parseEther, toUtf8Bytes } from 'ethers';
import { startAnvil, type Anvil } from '../../../src/evm/anvil.js';
import { BRIDGE_ADDRESS, bridgeInterface, loadArtifact, REQUEST_PEGOUT_TOPIC } from '../../../src/evm/bridge.js';
import { EvmObserver, type EvmObserverOptions, type OrphanedRequest } from '../../../src/evm/observer.js';
import { getRequest, listRequests, stageStatus } from '../../../src/evm/request-store.js';
import { EvmError } from '../../../src/evm/errors.js';
import { EvmRpc, hexQuantity } from '../../../src/evm/rpc.js';
import { SPACES } from '../../../src/storage/keys.js';
import { Store } from '../../../src/storage/store.js';
import type { RequestRecord } from '../../../src/storage/records.js';
import { repoRoot } from '../../support/paths.js';
import { openTempStore, tempDir, TEST_DESCRIPTOR } from '../../support/tempdir.js';

// anvil's first default account (a public development key)
const KEY = '0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80';
// anvil's second default account, for the transactions this process sends itself
const OWN_KEY = '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d';
const GOOD = 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080';
const pegout = (args: string[]) =>
  spawnSync(process.execPath, [path.join(repoRoot, 'bin', 'pegout.js'), ...args], { encoding: 'utf8' });

let anvil: Anvil;
let provider: JsonRpcProvider;
let wallet: Wallet;
let rpc: EvmRpc;

before(async () => {
  anvil = await startAnvil(['--gas-limit', '300000000']);
  rpc = new EvmRpc(anvil.url);
  provider = new JsonRpcProvider(anvil.url, undefined, {
    staticNetwork: true,
    polling: true,
    pollingInterval: 50,
    cacheTimeout: -1,
  });
  wallet = new Wallet(OWN_KEY, provider);
  const r = pegout(['bridge', 'install', '--rpc', anvil.url, '--json']);
  assert.equal(r.status, 0, r.stderr);
});
after(async () => {
  provider?.destroy();
  await anvil?.stop();
});

async function request(address: Uint8Array | string, value: bigint): Promise<string> {
  const data = bridgeInterface.encodeFunctionData('requestPegOut', [
    typeof address === 'string' ? toUtf8Bytes(address) : address,
  ]);
  const tx = await wallet.sendTransaction({ to: BRIDGE_ADDRESS, data, value });
  await tx.wait();
  return tx.hash.toLowerCase();
}

/** The request of EVM transaction `txHash`, moved to 'batched' as a signer would: the federation acted on it. */
async function markBatched(store: Store, txHash: string): Promise<RequestRecord> {
  const record = (await listRequests(store)).find((r) => r.txHash === txHash)!;
  await store.exclusive(async () => {
    const batch = store.batch();
    stageStatus(batch, record, 'batched', new Date().toISOString());
    await batch.write({ sync: true });
  });
  return record;
}

/** Ingests every final block; `orphaned` lists what the observer reported orphaned. */
async function ingestAll(store: Store, confirmations = 0): Promise<{ orphaned: OrphanedRequest[] }> {
  const { observer, orphaned } = observing(store, rpc, confirmations);
  for (let i = 0; i < 1000; i++) if ((await observer.sync()).caughtUp) break;
  return { orphaned };
}

/** An observer of `node` from block 0 into `store`, and the requests it reports orphaned. */
function observing(
  store: Store,
  node: EvmRpc,
  confirmations = 0,
  options: Pick<EvmObserverOptions, 'keepBlocks' | 'maxRange' | 'onReorgTooDeep'> = {},
): { observer: EvmObserver; orphaned: OrphanedRequest[] } {
  const orphaned: OrphanedRequest[] = [];
  const observer = new EvmObserver(store, node, {
    network: 'regtest',
    finality: { confirmations },
    startBlock: 0,
    onOrphaned: async (list) => void orphaned.push(...list),
    ...options,
  });
  return { observer, orphaned };
}

/** The EVM block numbers this member keeps a record of (evmblk/), oldest first. */
async function keptBlocks(store: Store): Promise<number[]> {
  return (await store.keys({ prefix: SPACES.evmBlock })).map((k) => Number(k.slice(SPACES.evmBlock.length)));
}

/** A JSON-RPC call as a proxy in front of anvil sees it. */
interface ProxiedCall {
  readonly id: number;
  readonly method: string;
  readonly params: { fromBlock: string; toBlock: string }[];
}

/**
 * A node on loopback that answers what `answer` gives (a JSON text) and passes every other call to
 * anvil: a node that refuses, lags or overflows as hosted ones do. Its URL; closed with the test.
 */
async function proxyNode(t: TestContext, answer: (call: ProxiedCall) => string | undefined): Promise<string> {
  const { createServer } = await import('node:http');
  const server = createServer(async (req, res) => {
    let body = '';
    for await (const chunk of req) body += chunk;
    const own = answer(JSON.parse(body) as ProxiedCall);
    if (own !== undefined) return void res.end(own);
    const upstream = await fetch(anvil.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    res.end(await upstream.text());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}

/** `store` holds the requests a member that ingested every final block of the chain at once holds. */
async function assertAsFreshIngestion(t: TestContext, store: Store): Promise<void> {
  const reference = await openTempStore(t);
  await ingestAll(reference);
  assert.deepEqual(
    (await listRequests(store)).map((r) => r.id),
    (await listRequests(reference)).map((r) => r.id),
  );
}

describe('bridge contract', () => {
  it('pins the RequestPegOut topic and burns the value', async () => {
    assert.equal(REQUEST_PEGOUT_TOPIC, '0xaa1c6070bc915de33c0fbc36ecf77b1e4fc1ebce832b2da62b6fe25f5a7dd5b0');
    const before = await provider.getBalance('0x000000000000000000000000000000000000dEaD');
    await request(GOOD, parseEther('0.02'));
    assert.equal(
      (await provider.getBalance('0x000000000000000000000000000000000000dEaD')) - before,
      parseEther('0.02'),
    );
    assert.equal(await provider.getBalance(BRIDGE_ADDRESS), 0n);
  });

  it('bridge install refuses a node that is not anvil', async (t) => {
    const { createServer } = await import('node:http');
    const server = createServer((_req, res) =>
      res.end('{"jsonrpc":"2.0","id":1,"result":"Geth/v1.14.0-stable/linux-amd64/go1.22"}'),
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    // the fake node answers in this process, so the CLI must run asynchronously
    const { promisify } = await import('node:util');
    const { execFile } = await import('node:child_process');
    const r = await promisify(execFile)(process.execPath, [
      path.join(repoRoot, 'bin', 'pegout.js'),
      'bridge',
      'install',
      '--rpc',
      `http://127.0.0.1:${(server.address() as { port: number }).port}`,
    ]).then(
      () => ({ status: 0, stderr: '' }),
      (err: { code: number; stderr: string }) => ({ status: err.code, stderr: err.stderr }),
    );
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /not_dev_chain: refusing to install the bridge: .* is "Geth\/v1.14.0/);
  });
});

describe('ingestion on a real anvil', () => {
  it('ingests requests made with cast (the README line), ethers, our CLI and a contract wallet; decides each', async (t) => {
    const store = await openTempStore(t);
    // the exact cast line from docs/evm.md
    const doc = readFileSync(path.join(repoRoot, 'docs', 'evm.md'), 'utf8');
    const line = /<!-- cast-send -->\n```sh\n(.+)\n```/.exec(doc)![1]!;
    const cast = spawnSync('bash', ['-c', line], {
      env: {
        ...process.env,
        PATH: `${path.join(repoRoot, 'node_modules', '.bin')}:${process.env.PATH}`,
        RPC: anvil.url,
        KEY,
      },
      encoding: 'utf8',
    });
    assert.equal(cast.status, 0, cast.stderr);

    const cli = spawnSync(
      process.execPath,
      [
        path.join(repoRoot, 'bin', 'pegout.js'),
        'request',
        '--rpc',
        anvil.url,
        '--private-key-env',
        'EVM_KEY',
        '--to',
        GOOD,
        '--amount',
        '0.015',
        '--network',
        'regtest',
        '--json',
      ],
      { env: { ...process.env, EVM_KEY: KEY }, encoding: 'utf8' },
    );
    assert.equal(cli.status, 0, cli.stderr);
    const cliOut = JSON.parse(cli.stdout) as { requestId: string; sats: string };
    assert.equal(cliOut.sats, '1500000');

    const forwarderArtifact = loadArtifact('Forwarder');
    const forwarder = await new ContractFactory(
      forwarderArtifact.abi as never,
      forwarderArtifact.bytecode,
      wallet,
    ).deploy();
    await forwarder.waitForDeployment();
    const fwd = await forwarder.getFunction('forward')(
      BRIDGE_ADDRESS,
      [toUtf8Bytes(GOOD), toUtf8Bytes(GOOD)],
      parseEther('0.03'),
      { value: parseEther('0.06') },
    );
    await fwd.wait();

    const tooBig = 22_000_000n * 10n ** 18n;
    await rpc.call('anvil_setBalance', [wallet.address, `0x${(tooBig * 2n).toString(16)}`]);
    const rejected = {
      below_minimum: await request(GOOD, parseEther('0.0099')),
      not_utf8: await request(Uint8Array.of(0xff, 0xfe, 0x00), parseEther('0.02')),
      invalid_address: await request('bcrt1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh', parseEther('0.02')),
      wrong_network: await request('bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4', parseEther('0.02')),
      amount_overflow: await request(GOOD, tooBig),
    };
    const observer = await ingestAll(store);
    const all = await listRequests(store);
    const byTx = (hash: string) => all.filter((r) => r.txHash === hash);
    for (const [reason, hash] of Object.entries(rejected)) {
      const [r] = byTx(hash);
      assert.equal(r?.status, 'rejected', reason);
      assert.equal(r?.reason, reason);
    }
    assert.equal(byTx(rejected.not_utf8)[0]!.bitcoinAddress, '0xfffe00');
    const viaForwarder = byTx((fwd.hash as string).toLowerCase());
    assert.equal(viaForwarder.length, 2, 'both requests made through the contract wallet count');
    for (const r of viaForwarder) {
      assert.equal(r.status, 'accepted');
      assert.equal(r.evmAddress, (await forwarder.getAddress()).toLowerCase());
      assert.equal(r.sats, 3_000_000n);
    }
    const fromCli = await getRequest(store, cliOut.requestId);
    assert.equal(fromCli?.status, 'accepted');
    assert.ok(
      all.some((r) => r.status === 'accepted' && r.sats === 1_000_000n),
      'the cast request',
    );
    // ingesting again changes nothing
    const count = all.length;
    const again = await ingestAll(store);
    assert.equal((await listRequests(store)).length, count);
    assert.equal(observer.orphaned.length + again.orphaned.length, 0);

    // the auditor's view agrees
    const listed = pegout([
      'requests',
      '--rpc',
      anvil.url,
      '--from',
      '0',
      '--to',
      String(await provider.getBlockNumber()),
      '--network',
      'regtest',
      '--json',
    ]);
    assert.equal(listed.status, 0, listed.stderr);
    const rows = JSON.parse(listed.stdout) as { id: string; status: string; reason?: string }[];
    assert.equal(rows.length, count);
    assert.deepEqual(new Set(rows.filter((r) => r.reason).map((r) => r.reason)), new Set(Object.keys(rejected)));
  });

  it('refuses bad requests in the CLI before sending anything', async () => {
    const start = await provider.getBlockNumber();
    const cases: [string[], RegExp][] = [
      [['--to', 'bcrt1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh', '--amount', '0.02'], /invalid_address/],
      [['--to', 'bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4', '--amount', '0.02'], /wrong_network/],
      // a valid witness v16 address: anyone could spend what it is paid
      [
        ['--to', 'bcrt1sx6p8njlx7h9mc2agz4yg82dzne23050ncq72cneeecez2pst8mahn8xecsf8g6hzx94420', '--amount', '0.02'],
        /unsupported_destination/,
      ],
      [['--to', GOOD, '--amount', '0.005'], /under the minimum/],
      [['--to', GOOD, '--amount', '0.020000001'], /more than 8 decimals/],
      [['--to', GOOD, '--amount', '1e-2'], /decimal number of BTC/],
    ];
    for (const [args, message] of cases) {
      const r = spawnSync(
        process.execPath,
        [
          path.join(repoRoot, 'bin', 'pegout.js'),
          'request',
          '--rpc',
          anvil.url,
          '--private-key-env',
          'EVM_KEY',
          '--network',
          'regtest',
          ...args,
        ],
        { env: { ...process.env, EVM_KEY: KEY }, encoding: 'utf8' },
      );
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, message);
      assert.ok(!r.stderr.includes(KEY.slice(2)), 'key never printed');
    }
    assert.equal(await provider.getBlockNumber(), start, 'no transaction was sent');
  });

  it('acts only on final blocks: a reorg before finality leaves no phantom request', async (t) => {
    const store = await openTempStore(t);
    await ingestAll(store, 3);
    const snapshot = await rpc.call<string>('evm_snapshot');
    const phantom = await request(GOOD, parseEther('0.05'));
    await ingestAll(store, 3); // the request is 0 confirmations deep: not final
    assert.equal((await listRequests(store)).filter((r) => r.txHash === phantom).length, 0);
    await rpc.call('evm_revert', [snapshot]);
    await rpc.call('anvil_mine', ['0x5']);
    await ingestAll(store, 3);
    const ids = (await listRequests(store)).map((r) => r.id);
    assert.equal(ids.filter((id) => id.startsWith(phantom)).length, 0, 'no phantom');
    const reference = await openTempStore(t);
    await ingestAll(reference, 3);
    assert.deepEqual(
      ids,
      (await listRequests(reference)).map((r) => r.id),
      'same as a fresh ingestion of the final chain',
    );
  });

  it("with the node's finalized tag, waits for the request's block to be finalized", async (t) => {
    const store = await openTempStore(t);
    const hash = await request(GOOD, parseEther('0.07'));
    const observer = new EvmObserver(store, rpc, { network: 'regtest', finality: 'finalized', startBlock: 0 });
    const sync = async (): Promise<void> => {
      for (let i = 0; i < 1000; i++) if ((await observer.sync()).caughtUp) break;
    };
    await sync();
    assert.equal((await listRequests(store)).filter((r) => r.txHash === hash).length, 0, 'not final yet');
    await rpc.call('anvil_mine', ['0x80']); // anvil finalizes 64 blocks behind the head
    await sync();
    assert.equal((await listRequests(store)).filter((r) => r.txHash === hash).length, 1);
  });

  it('rolls back a reorg below its depth: unacted requests vanish, acted-on ones raise an alarm', async (t) => {
    const store = await openTempStore(t);
    const snapshot = await rpc.call<string>('evm_snapshot');
    const quiet = await request(GOOD, parseEther('0.05'));
    const acted = await request(GOOD, parseEther('0.06'));
    await ingestAll(store, 0);
    const actedRecord = await markBatched(store, acted);
    await rpc.call('evm_revert', [snapshot]);
    await rpc.call('anvil_mine', ['0x4']);
    const observer = await ingestAll(store, 0);
    const after = await listRequests(store);
    assert.equal(after.filter((r) => r.txHash === quiet).length, 0, 'unacted request gone without trace');
    const orphan = after.find((r) => r.txHash === acted);
    assert.equal(orphan?.status, 'orphaned');
    assert.deepEqual(
      observer.orphaned.map((o) => [o.id, o.status]),
      [[actedRecord.id, 'batched']],
    );
  });

  it('a reorg that lands between the reads of one sync is still rolled back, and an acted-on request still alarms', async (t) => {
    const store = await openTempStore(t);
    const snapshot = await rpc.call<string>('evm_snapshot');
    const acted = await request(GOOD, parseEther('0.07'));
    await ingestAll(store, 0);
    const record = await markBatched(store, acted);
    await rpc.call('anvil_mine', ['0x2']);
    // the node answers this sync's eth_getLogs from the old chain, then reorganises to a longer
    // one without the request before the sync reads the range's last block
    let armed = true;
    const racing = new (class extends EvmRpc {
      override async call<T>(method: string, params: unknown[] = []): Promise<T> {
        const answer = await super.call<T>(method, params);
        if (method === 'eth_getLogs' && armed) {
          armed = false;
          await super.call('evm_revert', [snapshot]);
          await super.call('anvil_mine', ['0x8']);
        }
        return answer;
      }
    })(anvil.url);
    const { observer, orphaned } = observing(store, racing);
    for (let i = 0; i < 100; i++) if ((await observer.sync()).caughtUp) break;
    assert.equal(armed, false, 'the reorg was injected');
    assert.equal((await getRequest(store, record.id))?.status, 'orphaned');
    assert.deepEqual(
      orphaned.map((o) => o.id),
      [record.id],
    );
  });

  it('keeps the records of its last keepBlocks EVM blocks only: the store does not grow with every block read', async (t) => {
    const store = await openTempStore(t);
    // one range a block: a record for each block read, as a member that keeps up with the chain writes
    const { observer } = observing(store, rpc, 0, { keepBlocks: 4, maxRange: 1 });
    for (let i = 0; i < 6; i++) await request(GOOD, parseEther('0.05'));
    await rpc.call('anvil_mine', ['0x6']);
    for (let i = 0; i < 1000; i++) if ((await observer.sync()).caughtUp) break;
    const cursor = (await observer.cursor())!.height;
    const kept = await keptBlocks(store);
    assert.ok(cursor >= 12, `read past block 12 (cursor ${cursor})`);
    assert.deepEqual(
      kept,
      [cursor - 4, cursor - 3, cursor - 2, cursor - 1, cursor],
      'the last four blocks and the one before them, a fork point; no older one',
    );
    // what the records were kept for still works: a reorg inside the window rolls back
    const snapshot = await rpc.call<string>('evm_snapshot');
    const quiet = await request(GOOD, parseEther('0.06'));
    for (let i = 0; i < 1000; i++) if ((await observer.sync()).caughtUp) break;
    assert.equal((await listRequests(store)).filter((r) => r.txHash === quiet).length, 1);
    await rpc.call('evm_revert', [snapshot]);
    await rpc.call('anvil_mine', ['0x2']);
    for (let i = 0; i < 1000; i++) if ((await observer.sync()).caughtUp) break;
    assert.equal((await listRequests(store)).filter((r) => r.txHash === quiet).length, 0, 'rolled back');
  });

  it('refuses a reorg deeper than the records it kept (reorg_too_deep) and changes nothing', async (t) => {
    const store = await openTempStore(t);
    const alarms: string[] = [];
    const { observer, orphaned } = observing(store, rpc, 0, {
      keepBlocks: 3,
      maxRange: 1,
      onReorgTooDeep: async (err) => void alarms.push(err.code),
    });
    for (let i = 0; i < 1000; i++) if ((await observer.sync()).caughtUp) break;
    const snapshot = await rpc.call<string>('evm_snapshot');
    const acted = await request(GOOD, parseEther('0.05'));
    await rpc.call('anvil_mine', ['0x5']);
    for (let i = 0; i < 1000; i++) if ((await observer.sync()).caughtUp) break;
    const record = await markBatched(store, acted);
    const cursor = await observer.cursor();
    const kept = await keptBlocks(store);
    assert.equal(kept.length, 4);
    // the chain from before the request, longer: every kept block left it, and so did older ones
    await rpc.call('evm_revert', [snapshot]);
    await rpc.call('anvil_mine', ['0x9']);
    await assert.rejects(
      observer.sync(),
      (err: unknown) =>
        err instanceof EvmError && err.code === 'reorg_too_deep' && err.message.includes(`block ${kept[0]}`),
    );
    assert.deepEqual(alarms, ['reorg_too_deep']);
    assert.equal((await getRequest(store, record.id))?.status, 'batched', 'nothing orphaned or forgotten');
    assert.deepEqual(orphaned, []);
    assert.deepEqual(await observer.cursor(), cursor, 'the cursor stays');
    assert.deepEqual(await keptBlocks(store), kept);
  });

  it('a node behind this member (it has no block at the cursor) is waited for, never taken for a reorg', async (t) => {
    const store = await openTempStore(t);
    await rpc.call('anvil_mine', ['0x20']);
    const acted = await request(GOOD, parseEther('0.05'));
    const quiet = await request(GOOD, parseEther('0.06'));
    await ingestAll(store, 0);
    const record = await markBatched(store, acted);
    const head = Number(await rpc.call<string>('eth_blockNumber'));
    // a backend restored from a snapshot 20 blocks old: no block above its head, and 'latest' is its head
    const lagging = new (class extends EvmRpc {
      override async call<T>(method: string, params: unknown[] = []): Promise<T> {
        if (method === 'eth_getBlockByNumber') {
          const n = params[0];
          if (n === 'latest') return super.call<T>(method, [hexQuantity(head - 20), false]);
          if (typeof n === 'string' && n.startsWith('0x') && Number(n) > head - 20) return null as T;
        }
        return super.call<T>(method, params);
      }
    })(anvil.url);
    const { observer, orphaned } = observing(store, lagging);
    await assert.rejects(observer.sync(), (err: unknown) => err instanceof EvmError && err.code === 'rpc_behind');
    assert.deepEqual(orphaned, [], 'no alarm');
    assert.equal((await getRequest(store, record.id))?.status, 'batched');
    assert.equal((await listRequests(store)).filter((r) => r.txHash === quiet).length, 1, 'nothing forgotten');
    assert.equal((await observer.cursor())?.height, head, 'the cursor stays');
  });

  it('halves the log range when the node refuses a large one', async (t) => {
    const store = await openTempStore(t);
    // a tiny proxy that refuses eth_getLogs over more than 3 blocks, like hosted nodes do
    const url = await proxyNode(t, (call) =>
      call.method === 'eth_getLogs' && Number(call.params[0]!.toBlock) - Number(call.params[0]!.fromBlock) > 2
        ? JSON.stringify({
            jsonrpc: '2.0',
            id: call.id,
            error: { code: -32005, message: 'query returned more than 10000 results' },
          })
        : undefined,
    );
    const observer = new EvmObserver(store, new EvmRpc(url), {
      network: 'regtest',
      finality: { confirmations: 0 },
      startBlock: 0,
      maxRange: 64,
    });
    for (let i = 0; i < 1000; i++) if ((await observer.sync()).caughtUp) break;
    await assertAsFreshIngestion(t, store);
  });

  it('grows its log range back after the node refused some: a few transient errors do not leave it reading block by block', async (t) => {
    const store = await openTempStore(t);
    await rpc.call('anvil_mine', ['0x200']);
    // a node behind a rate limiter: its first ten eth_getLogs are refused, everything after is answered
    let refused = 0;
    let asked = 0;
    const flaky = new (class extends EvmRpc {
      override async call<T>(method: string, params: unknown[] = []): Promise<T> {
        if (method === 'eth_getLogs') {
          asked++;
          if (refused < 10) {
            refused++;
            throw new EvmError('rpc_error', 'eth_getLogs: node answered -32005 rate limited', { method });
          }
        }
        return super.call<T>(method, params);
      }
    })(anvil.url);
    const observer = new EvmObserver(store, flaky, {
      network: 'regtest',
      finality: { confirmations: 0 },
      startBlock: 0,
      maxRange: 64,
    });
    // as the member's loop does: a failed step is logged and tried again
    const step = (): Promise<boolean> =>
      observer.sync().then(
        (r) => r.caughtUp,
        (err: unknown) => {
          if (err instanceof EvmError && err.code === 'rpc_error') return false;
          throw err;
        },
      );
    for (let i = 0; i < 10_000; i++) if (await step()) break;
    const head = Number(await rpc.call<string>('eth_blockNumber'));
    t.diagnostic(`${asked} eth_getLogs for ${head + 1} blocks, ${refused} refused`);
    assert.equal((await observer.cursor())?.height, head);
    assert.ok(asked < refused + 2 * Math.ceil((head + 1) / 64) + 20, `${asked} eth_getLogs`);
  });

  it('refuses an answer over its size cap, and reads a smaller range instead', async (t) => {
    const store = await openTempStore(t);
    // a node that answers any eth_getLogs over more than one block with 2 MB of logs
    const url = await proxyNode(t, (call) =>
      call.method === 'eth_getLogs' && call.params[0]!.fromBlock !== call.params[0]!.toBlock
        ? `{"jsonrpc":"2.0","id":${call.id},"result":[${'{"data":"0x"},'.repeat(150_000)}{}]}`
        : undefined,
    );
    const capped = new EvmRpc(url, { maxResponseBytes: 1024 * 1024 });
    await assert.rejects(
      capped.call('eth_getLogs', [{ fromBlock: '0x0', toBlock: '0x1' }]),
      (err: unknown) => err instanceof EvmError && err.code === 'rpc_too_large' && err.message.includes('1048576'),
    );
    const observer = new EvmObserver(store, capped, {
      network: 'regtest',
      finality: { confirmations: 0 },
      startBlock: 0,
    });
    for (let i = 0; i < 1000; i++) if ((await observer.sync()).caughtUp) break;
    await assertAsFreshIngestion(t, store);
  });

  it('survives a node that is down or answers garbage: nothing advances past unread blocks', async (t) => {
    const store = await openTempStore(t);
    const dead = new EvmObserver(store, new EvmRpc('http://127.0.0.1:1', { retries: 1, backoffMs: 10 }), {
      network: 'regtest',
      finality: { confirmations: 0 },
      startBlock: 0,
    });
    await assert.rejects(dead.sync(), { code: 'rpc_unreachable' });
    assert.equal(await dead.cursor(), undefined);
    const { createServer } = await import('node:http');
    const server = createServer((_req, res) => res.end('{"jsonrpc":"2.0","id":1,"result":{"number":"nope"}}'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const garbage = new EvmObserver(
      store,
      new EvmRpc(`http://127.0.0.1:${(server.address() as { port: number }).port}`, { retries: 1, backoffMs: 10 }),
      { network: 'regtest', finality: { confirmations: 0 }, startBlock: 0 },
    );
    await assert.rejects(garbage.sync(), { code: 'rpc_malformed' });
    assert.equal(await garbage.cursor(), undefined);
  });
});

describe('volume and restarts', () => {
  it('ingests thousands of requests from a few blocks without loss, across SIGKILLed restarts', async (t) => {
    const artifact = loadArtifact('Forwarder');
    const forwarder = await new ContractFactory(artifact.abi as never, artifact.bytecode, wallet).deploy();
    await forwarder.waitForDeployment();
    const first = (await provider.getBlockNumber()) + 1;
    await rpc.call('evm_setAutomine', [false]);
    const perTx = 250;
    const txs = 12;
    const addresses = Array.from({ length: perTx }, () => toUtf8Bytes(GOOD));
    const fn = forwarder.getFunction('forward');
    let nonce = await provider.getTransactionCount(wallet.address, 'pending');
    for (let i = 0; i < txs; i++) {
      await fn(BRIDGE_ADDRESS, addresses, parseEther('0.01'), {
        value: parseEther('0.01') * BigInt(perTx),
        gasLimit: 25_000_000,
        nonce: nonce++,
      });
      if (i % 4 === 3) await rpc.call('evm_mine');
    }
    await rpc.call('evm_mine');
    await rpc.call('evm_setAutomine', [true]);
    const last = await provider.getBlockNumber();
    const logs = await rpc.call<unknown[]>('eth_getLogs', [
      {
        address: BRIDGE_ADDRESS,
        topics: [REQUEST_PEGOUT_TOPIC],
        fromBlock: `0x${first.toString(16)}`,
        toBlock: `0x${last.toString(16)}`,
      },
    ]);
    assert.equal(logs.length, perTx * txs, 'all requests mined');
    assert.ok(last - first < 6, `in a few blocks (${last - first + 1})`);

    const dir = await tempDir(t, 'evm-restart');
    const worker = path.join(repoRoot, 'dist', 'test', 'support', 'evm-ingest-worker.js');
    let kills = 0;
    for (let round = 0; round < 12; round++) {
      const child = spawn(process.execPath, [worker, dir, anvil.url, TEST_DESCRIPTOR], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      const killAfter = 150 + Math.floor(Math.random() * 500);
      const done = await Promise.race([exited.then(() => true), sleep(killAfter).then(() => false)]);
      if (!done) {
        child.kill('SIGKILL');
        await exited;
        kills++;
        continue;
      }
      if (out.includes('done')) break;
    }
    const final = spawnSync(process.execPath, [worker, dir, anvil.url, TEST_DESCRIPTOR], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    assert.equal(final.status, 0, final.stderr);
    const store = await Store.open(dir, { descriptor: TEST_DESCRIPTOR });
    try {
      const all = await listRequests(store);
      const ids = new Set(all.map((r) => r.id));
      assert.equal(ids.size, all.length, 'no duplicate');
      const inRange = all.filter((r) => r.blockNumber >= first && r.blockNumber <= last);
      assert.equal(inRange.length, perTx * txs, `no gap (killed ${kills} times)`);
      const cursor = await new EvmObserver(store, rpc, {
        network: 'regtest',
        finality: { confirmations: 0 },
        startBlock: 0,
      }).cursor();
      assert.ok(cursor && cursor.height >= last, 'cursor at the head');
    } finally {
      await store.close();
    }
  });
});
