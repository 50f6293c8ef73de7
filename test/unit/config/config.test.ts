import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { envName, loadConfig, parseConfig } from '../../../src/config/config.js';

const KEY_A = 'a'.repeat(64);
const KEY_B = 'b'.repeat(64);
const base = {
  network: 'regtest',
  federation: { threshold: 2, pubkeys: [KEY_A, KEY_B] },
  memberKeyFile: '/etc/pegout/member.key',
  storeDir: '/var/lib/pegout',
  p2p: { port: 7700, peers: { [KEY_B]: 'wss://127.0.0.1:7701' } },
  api: { port: 8080 },
  evm: { rpcUrl: 'http://127.0.0.1:8545' },
  bitcoin: null,
};

function refuses(json: unknown, env: Record<string, string>, message: RegExp): void {
  assert.throws(
    () => parseConfig(json, env),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'invalid_config');
      assert.match(err.message, message);
      return true;
    },
  );
}

/** Refused with a message that matches `message` and does not contain `secret`. */
function hides(json: unknown, env: Record<string, string>, secret: string, message: RegExp): void {
  assert.throws(
    () => parseConfig(json, env),
    (err: Error & { code?: string }) => {
      assert.equal(err.code, 'invalid_config');
      assert.ok(!err.message.includes(secret), `the message shows ${secret}: ${err.message}`);
      assert.match(err.message, message);
      return true;
    },
  );
}

const literal = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describe('member config', () => {
  it('fills defaults and takes environment overrides', () => {
    const c = parseConfig(base, {
      PEGOUT_EVM_CONFIRMATIONS: '12',
      PEGOUT_API_PORT: '9000',
      PEGOUT_EVM_USE_FINALIZED_TAG: 'true',
    });
    assert.equal(c.evm.confirmations, 12);
    assert.equal(c.api.port, 9000);
    assert.equal(c.evm.useFinalizedTag, true);
    assert.equal(c.evm.bridge, '0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB');
    assert.equal(c.bitcoin, null);
    assert.ok(c.workers >= 1);
    assert.equal(envName(['evm', 'rpcUrl']), 'PEGOUT_EVM_RPC_URL');
    assert.deepEqual(c.api.hostnames, []);
    const named = parseConfig(base, { PEGOUT_API_HOSTNAMES: 'Status.Example.org,pegout.internal' });
    assert.deepEqual(named.api.hostnames, ['status.example.org', 'pegout.internal']);
  });

  it('names the field, the value and what was expected', () => {
    refuses(
      { ...base, network: 'moon' },
      {},
      /config field network is "moon"; expected one of mainnet, testnet, signet, regtest/,
    );
    refuses({ ...base, api: { port: 70000 } }, {}, /api.port is 70000; expected an integer in 0..65535/);
    refuses(base, { PEGOUT_API_PORT: 'eighty' }, /api.port \(from PEGOUT_API_PORT\) is "eighty"/);
    refuses(
      { ...base, federation: { threshold: 3, pubkeys: [KEY_A, KEY_B] } },
      {},
      /federation.threshold is 3; expected at most the number of pubkeys \(2\)/,
    );
    refuses(
      { ...base, federation: { threshold: 1, pubkeys: [KEY_A, KEY_B] } },
      {},
      /federation.threshold is 1; expected more than half the members \(at least 2 of 2\)/,
    );
    refuses(
      {
        ...base,
        bitcoin: { rpcUrl: 'http://127.0.0.1:18443', cookieFile: '/c' },
        declaredFunding: { count: 1, sats: 100000 },
      },
      {},
      /declaredFunding .* expected null when bitcoin is configured/,
    );
    refuses({ ...base, evm: { rpcUrl: 'x', confirmatons: 3 } }, {}, /evm.confirmatons .* no such field/);
    refuses({ ...base, storeDir: undefined }, {}, /storeDir .* it has no default/);
    refuses(
      { ...base, p2p: { port: 1, peers: { [KEY_B]: 'http://x' } } },
      {},
      /p2p.peers.b+ is "http:\/\/x"; expected a wss:\/\/ URL/,
    );
    refuses(
      { ...base, p2p: { port: 1, peers: { [KEY_B]: 'ws://127.0.0.1:7701' } } },
      {},
      /p2p.peers.b+ is "ws:\/\/127.0.0.1:7701"; expected a wss:\/\/ URL \(links run over TLS only\)/,
    );
    refuses({ ...base, memberKeyFile: null }, {}, /PEGOUT_MEMBER_KEY/);
    refuses(
      { ...base, api: { port: 1, hostnames: ['https://status.example.org/'] } },
      {},
      /api.hostnames is \["https:\/\/status.example.org\/"\]; expected a list of DNS names/,
    );
    refuses({ ...base, api: { port: 1, hostnames: 'status.example.org' } }, {}, /api.hostnames is "status/);
  });

  it("reads a relative path in the file from the file's directory, not from wherever the member was started", async () => {
    // started from another directory (a service unit without WorkingDirectory), "storeDir": "store"
    // opened a new, empty store there: a member that remembers no payment it signed may sign a
    // second payment of a request
    const dir = await mkdtemp(path.join(tmpdir(), 'pegout-config-'));
    const file = path.join(dir, 'member.json');
    await writeFile(
      file,
      JSON.stringify({
        ...base,
        memberKeyFile: 'keys/member.key',
        storeDir: 'store',
        admin: { socket: '../run/admin.sock', tokenFile: '/etc/pegout/admin.token' },
        bitcoin: { rpcUrl: 'http://127.0.0.1:18443', cookieFile: 'bitcoin/.cookie' },
        rotation: { plan: 'plan.json' },
      }),
    );
    const c = await loadConfig(file, { PEGOUT_MEMBER_KEY: 'unused' });
    assert.equal(c.storeDir, path.join(dir, 'store'));
    assert.equal(c.memberKeyFile, path.join(dir, 'keys/member.key'));
    assert.equal(c.admin.socket, path.join(path.dirname(dir), 'run/admin.sock'));
    assert.equal(c.admin.tokenFile, '/etc/pegout/admin.token', 'absolute paths as they are');
    assert.equal(c.bitcoin?.cookieFile, path.join(dir, 'bitcoin/.cookie'));
    assert.equal(c.rotation?.plan, path.join(dir, 'plan.json'));
    const fromEnv = await loadConfig(file, { PEGOUT_STORE_DIR: 'elsewhere' });
    assert.equal(fromEnv.storeDir, path.resolve('elsewhere'), 'a variable is read from the working directory');
  });

  it('on mainnet, takes no outflow limit by default and acts on no EVM block at the tip', () => {
    // the defaults (100 BTC a request without a human look, 1,000,000 BTC a window) are for test
    // networks; on mainnet the operators choose them, and a block at depth 0 may still be reorganised
    const mainnet = {
      ...base,
      network: 'mainnet',
      bitcoin: { rpcUrl: 'http://127.0.0.1:8332', cookieFile: '/c' },
      limits: { maxRequestSats: 100_000_000, windowSats: 1_000_000_000 },
    };
    assert.equal(parseConfig(mainnet, {}).limits.windowSats, 1_000_000_000);
    refuses(
      { ...mainnet, limits: { windowSats: 1_000_000_000 } },
      {},
      /config field limits.maxRequestSats is not set; expected on mainnet a value the operators chose/,
    );
    refuses({ ...mainnet, limits: undefined }, {}, /limits.maxRequestSats is not set/);
    refuses({ ...mainnet, limits: { maxRequestSats: 100_000_000 } }, {}, /limits.windowSats is not set/);
    assert.equal(
      parseConfig({ ...mainnet, limits: { maxRequestSats: 100_000_000 } }, { PEGOUT_LIMITS_WINDOW_SATS: '1000000000' })
        .limits.windowSats,
      1_000_000_000,
      'or from its variable',
    );
    refuses(
      { ...mainnet, evm: { rpcUrl: 'http://127.0.0.1:8545', confirmations: 0 } },
      {},
      /evm.confirmations is 0; expected at least 1 on mainnet/,
    );
    parseConfig({ ...mainnet, evm: { rpcUrl: 'http://127.0.0.1:8545', confirmations: 0, useFinalizedTag: true } }, {});
    parseConfig({ ...base, evm: { rpcUrl: 'http://127.0.0.1:8545', confirmations: 0 }, limits: undefined }, {});
  });

  it('refuses to spend outputs shallower than the paid depth', () => {
    const bitcoin = { rpcUrl: 'http://127.0.0.1:18443', cookieFile: '/c', paidConfirmations: 6 };
    refuses(
      { ...base, bitcoin: { ...bitcoin, spendConfirmations: 3 } },
      {},
      /bitcoin.spendConfirmations is 3; expected at least bitcoin.paidConfirmations \(6\)/,
    );
    parseConfig({ ...base, bitcoin: { ...bitcoin, spendConfirmations: 6 } }, {});
  });

  it('never shows a secret in an error', () => {
    assert.throws(
      () => parseConfig({ ...base, bitcoin: { rpcUrl: 'http://127.0.0.1:18443', user: 'u', password: '' } }, {}),
      (err: Error) => /bitcoin.password is \[redacted\]/.test(err.message),
    );
    refuses({ ...base, bitcoin: { rpcUrl: 'http://127.0.0.1:18443' } }, {}, /cookieFile, or both user and password/);
  });

  it('names a misspelled field and a wrong-typed section without showing their values', () => {
    hides(
      { ...base, bitcoin: { rpcUrl: 'http://127.0.0.1:18443', user: 'u', pasword: 'hunter2' } },
      {},
      'hunter2',
      /config field bitcoin.pasword is a string; expected no such field \(known: rpcUrl, cookieFile, user, password,/,
    );
    hides(
      { ...base, bitcoin: [{ password: 'SECRET' }] },
      {},
      'SECRET',
      /config field bitcoin is an array; expected an object/,
    );
    hides({ ...base, rotation: 'SECRET' }, {}, 'SECRET', /config field rotation is a string; expected an object/);
  });

  it('refuses field names every object inherits', () => {
    for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
      // parsed, as loadConfig reads a file: there "__proto__" is a field of its own, not the prototype
      const evm: unknown = JSON.parse(`{"rpcUrl": "http://127.0.0.1:8545", "${name}": 1}`);
      refuses({ ...base, evm }, {}, new RegExp(`config field evm.${name} is a number; expected no such field`));
      refuses(
        JSON.parse(`{"${name}": {}}`),
        {},
        new RegExp(`config field ${name} is an object; expected no such field`),
      );
    }
  });

  it('takes a peer only at wss://host:port, and never shows its credentials', () => {
    const peer = (url: string): unknown => ({ ...base, p2p: { port: 1, peers: { [KEY_B]: url } } });
    for (const url of [
      'wss://127.0.0.1:7701',
      'wss://127.0.0.1:7701/',
      'wss://[::1]:7701',
      'wss://peer.example.org:443',
    ])
      assert.equal(parseConfig(peer(url)).p2p.peers[KEY_B], url);
    const expected = 'expected a wss:// URL \\(links run over TLS only\\) of the form wss://host:port';
    for (const url of [
      'wss://host:port',
      'wss://h:99999',
      'wss://h:0',
      'wss://h',
      'wss://h:7701/members',
      'wss://h:7701/?q=1',
      'wss://h:7701?',
      'wss://h:7701/#top',
      'wss://h:7701#',
      'wss://:7701',
    ])
      refuses(peer(url), {}, new RegExp(`p2p.peers.b+ is ${literal(JSON.stringify(url))}; ${expected}`));
    for (const url of ['wss://u:hunter2@h:7701', 'wss://u:hunter2@h:99999', 'wss://u:hunter2/x@h:7701'])
      hides(
        peer(url),
        {},
        'hunter2',
        new RegExp(`p2p.peers.b+ is "wss://\\[redacted credentials\\]@h:\\d+"; ${expected}`),
      );
    hides(
      { ...base, p2p: { port: 1, peers: { 'wss://u:hunter2@h:7701': KEY_B } } },
      {},
      'hunter2',
      /p2p.peers.wss:\/\/\[redacted credentials\]@h:7701 is "wss:\/\/\[redacted credentials\]@h:7701"; expected a 64-character/,
    );
    hides(peer('wss://hunter2@h:7701'), {}, 'hunter2', /p2p.peers.b+ is "wss:\/\/\[redacted credentials\]@h:7701"/);
    const env = (json: string) => ({ PEGOUT_P2P_PEERS: json });
    assert.deepEqual(parseConfig(base, env(`{"${KEY_B}": "wss://10.0.0.2:7700"}`)).p2p.peers, {
      [KEY_B]: 'wss://10.0.0.2:7700',
    });
    hides(
      base,
      env(`{"${KEY_B}": "wss://u:hunter2@h:7701"`),
      'hunter2',
      /config field p2p.peers \(from PEGOUT_P2P_PEERS\) is not valid JSON; expected an object/,
    );
    hides(
      base,
      env('"wss://u:hunter2@h:7701"'),
      'hunter2',
      /config field p2p.peers \(from PEGOUT_P2P_PEERS\) is a string; expected an object/,
    );
  });

  it('reads a number from the environment only in plain decimal', () => {
    const bitcoin = { ...base, bitcoin: { rpcUrl: 'http://127.0.0.1:18443', cookieFile: '/c' } };
    const c = parseConfig(bitcoin, { PEGOUT_API_PORT: '8080', PEGOUT_BITCOIN_MAX_FEE_RATE: '12.5' });
    assert.equal(c.api.port, 8080);
    assert.equal(c.bitcoin?.maxFeeRate, 12.5);
    for (const port of ['0x1F90', '8e3', ' 12 ', '12 ', '+12', '12.0', '1_000', '0b101', 'Infinity', ''])
      refuses(
        base,
        { PEGOUT_API_PORT: port },
        new RegExp(`api.port \\(from PEGOUT_API_PORT\\) is ${literal(JSON.stringify(port))}`),
      );
    for (const rate of ['1e2', '.5', '5.', '0x10', ' 5'])
      refuses(
        bitcoin,
        { PEGOUT_BITCOIN_MAX_FEE_RATE: rate },
        /bitcoin.maxFeeRate \(from PEGOUT_BITCOIN_MAX_FEE_RATE\) is .*; expected a number in 1..100000, written in plain decimal/,
      );
    refuses(
      base,
      { PEGOUT_API_PORT: '-1' },
      /api.port \(from PEGOUT_API_PORT\) is "-1"; expected an integer in 0..65535/,
    );
  });
});
