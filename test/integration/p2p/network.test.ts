import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, it } from 'node:test';
import { Packr } from 'msgpackr';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { encodeFrame, isBytes } from '../../../src/p2p/frames.js';
import { P2pError } from '../../../src/p2p/errors.js';
import { PeerNetwork } from '../../../src/p2p/network.js';
import { linkNetwork as network, members, rawPeer, stopNetworks, until, within } from '../../support/links.js';

afterEach(stopNetworks);

describe('member links', () => {
  it('three members connect, authenticate and exchange messages both ways', async () => {
    const ms = await members(3);
    const nets = ms.map((m) => network(m, ms));
    const got: [string, string, string][] = [];
    nets.forEach((n, i) =>
      n.on('message', (from: string, _type: string, body: { text: string }) => got.push([String(i), from, body.text])),
    );
    await Promise.all(nets.map((n) => n.start()));
    await until(() => nets.every((n) => n.connectedPeers().length === 2), 'full mesh');
    assert.equal(nets[0]!.broadcast('note', { text: 'from 0' }), 2);
    assert.ok(nets[2]!.send(toHex(ms[1]!.key), 'note', { text: '2 to 1' }));
    await until(() => got.length === 3, 'messages');
    assert.deepEqual(
      got
        .filter(([to]) => to === '1')
        .map(([, from, text]) => [from, text])
        .sort(),
      [
        [toHex(ms[0]!.key), 'from 0'],
        [toHex(ms[2]!.key), '2 to 1'],
      ].sort(),
    );
    assert.equal(nets[0]!.stats.handshakeFailures, 0);
  });

  it('a link port already taken fails start with listen_failed naming it, and the process goes on', async () => {
    const ms = await members(2);
    const first = network(ms[0]!, ms);
    await first.start();
    // the same member's port again: before, ws re-emitted the listen error as an unhandled 'error' and the process died
    const second = network(ms[0]!, ms);
    await assert.rejects(second.start(), (err: unknown) => {
      assert.ok(err instanceof P2pError, String(err));
      assert.equal(err.code, 'listen_failed');
      assert.ok(err.message.includes(`127.0.0.1:${ms[0]!.port}`), err.message);
      return true;
    });
    await sleep(50);
    assert.equal(first.connectedPeers().length, 0, 'the first one still runs');
  });

  it('never lets a non-member past the handshake', async () => {
    const ms = await members(2);
    const net = network(ms[0]!, ms);
    await net.start();
    let delivered = 0;
    net.on('message', () => delivered++);
    const stranger = await rawPeer(ms[0]!, new Uint8Array(randomBytes(32)));
    stranger.ws.send(encodeFrame('note', { text: 'let me in' }));
    await stranger.closed;
    assert.equal(delivered, 0);
    assert.ok(net.stats.handshakeFailures >= 1);
    assert.deepEqual(
      net.connectedPeers().filter((p) => p !== toHex(ms[1]!.key)),
      [],
    );
  });

  it('refuses a member key with a bad handshake signature', async () => {
    const ms = await members(2);
    const net = network(ms[0]!, [ms[0]!, ms[1]!]);
    await net.start();
    const forged = await rawPeer(ms[0]!, ms[1]!.secretKey, { tamper: true });
    await forged.closed;
    assert.ok(net.stats.handshakeFailures >= 1);
    assert.equal(net.connectedPeers().length, 0);
  });

  it('drops and counts garbage, unknown, wrong-version, bad-body and oversized frames; honest traffic still flows; then bans', async () => {
    const ms = await members(3);
    const net = network(ms[0]!, ms, { limits: { misbehaviourLimit: 6, banMs: 60_000, maxFrameBytes: 64 * 1024 } });
    const honest = network(ms[2]!, ms);
    await Promise.all([net.start(), honest.start()]);
    const got: string[] = [];
    net.on('message', (_from: string, _type: string, body: { text: string }) => got.push(body.text));
    // ms[1] is a member whose process misbehaves
    const bad = await rawPeer(ms[0]!, ms[1]!.secretKey);
    assert.equal(await bad.ready, true);
    await until(() => net.connectedPeers().includes(toHex(ms[1]!.key)), 'hostile member connected');
    const raw = new Packr({ useRecords: false });
    bad.ws.send(Buffer.from([0xc1, 0xff, 0x00])); // not msgpack
    bad.ws.send(encodeFrame('mystery', {}));
    bad.ws.send(raw.pack({ v: 99, type: 'note', body: { text: 'x' } }));
    bad.ws.send(encodeFrame('note', { text: 42 }));
    bad.ws.send(encodeFrame('note', { text: 'a valid one still counts' }));
    await until(() => net.stats.dropped.bad_body === 1, 'drops counted');
    assert.deepEqual(
      {
        malformed: net.stats.dropped.malformed,
        unknown_type: net.stats.dropped.unknown_type,
        wrong_version: net.stats.dropped.wrong_version,
        bad_body: net.stats.dropped.bad_body,
      },
      { malformed: 1, unknown_type: 1, wrong_version: 1, bad_body: 1 },
    );
    await until(() => got.includes('a valid one still counts'), 'valid frame from the same peer');
    await until(() => net.connectedPeers().includes(toHex(ms[2]!.key)), 'honest peer');
    assert.ok(honest.send(toHex(ms[0]!.key), 'note', { text: 'honest' }));
    await until(() => got.includes('honest'), 'honest traffic');
    // one more fault and an oversized frame reach the limit: disconnected and banned
    bad.ws.send(encodeFrame('mystery', {}));
    bad.ws.send(Buffer.alloc(70 * 1024, 1));
    await bad.closed;
    await until(() => net.stats.bans === 1, 'ban');
    assert.equal(net.stats.dropped.oversized, 1);
    const again = await rawPeer(ms[0]!, ms[1]!.secretKey);
    await again.closed;
    assert.ok(!net.connectedPeers().includes(toHex(ms[1]!.key)), 'banned peer kept out');
  });

  it('rate-limits a flooding peer, then bans it, and lets it back after the ban', async () => {
    const ms = await members(2);
    const net = network(ms[0]!, ms, { limits: { framesPerSecond: 20, misbehaviourLimit: 10, banMs: 400 } });
    await net.start();
    const flood = await rawPeer(ms[0]!, ms[1]!.secretKey);
    await flood.ready;
    await until(() => net.connectedPeers().length === 1, 'flooder connected');
    for (let i = 0; i < 200; i++) flood.ws.send(encodeFrame('note', { text: `spam ${i}` }));
    await flood.closed;
    assert.ok(net.stats.dropped.rate_limited >= 10);
    assert.equal(net.stats.bans, 1);
    await sleep(450);
    const back = await rawPeer(ms[0]!, ms[1]!.secretKey);
    assert.equal(await back.ready, true);
    await until(() => net.connectedPeers().length === 1, 'back after the ban');
    back.ws.close();
  });

  // A hostile member that closes its link and dials again must not start clean: its faults would
  // never reach a ban and each new link would bring a fresh burst of frames past the rate.
  it("a member's faults add up over its links to a ban: reconnecting does not clear them", async () => {
    const ms = await members(2);
    const net = network(ms[0]!, ms, { limits: { misbehaviourLimit: 6, banMs: 60_000 } });
    await net.start();
    for (let link = 1; link <= 3; link++) {
      const bad = await rawPeer(ms[0]!, ms[1]!.secretKey);
      assert.equal(await bad.ready, true, `link ${link} authenticated`);
      await until(() => net.connectedPeers().length === 1, `link ${link} up`);
      for (let i = 0; i < 2; i++) bad.ws.send(Buffer.from([0xc1, 0xff, 0x00]));
      await until(() => net.stats.dropped.malformed === 2 * link, `link ${link}'s faults counted`);
      if (link < 3) {
        bad.ws.close();
        await until(() => net.connectedPeers().length === 0, `link ${link} down`);
      } else await within(bad.closed, 'the sixth fault to close the link');
    }
    assert.equal(net.stats.bans, 1, 'six faults over three links are a ban');
    const again = await rawPeer(ms[0]!, ms[1]!.secretKey);
    await again.closed;
    assert.ok(!net.connectedPeers().includes(toHex(ms[1]!.key)), 'kept out while banned');
  });

  it('a link that shows no sign of life is closed, so its peer can link again; an idle live one stays', async () => {
    // the network between members may drop a connection without a close: kept, the dead link made
    // the peer's new ones the duplicates, refused until TCP gave up on a write (about 15 minutes)
    const ms = await members(3);
    const net = network(ms[0]!, ms, { limits: { keepaliveMs: 100 } });
    await net.start();
    const idle = network(ms[2]!, ms, { limits: { keepaliveMs: 100 } });
    await idle.start();
    const dead = await rawPeer(ms[0]!, ms[1]!.secretKey);
    assert.equal(await dead.ready, true);
    await until(() => net.connectedPeers().length === 2, 'both linked');
    // it stops reading: no pong comes back, as from a peer whose connection dropped
    (dead.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    await until(() => !net.connectedPeers().includes(toHex(ms[1]!.key)), 'the silent link closed', 2_000);
    await sleep(500);
    assert.ok(net.connectedPeers().includes(toHex(ms[2]!.key)), 'the idle live link stays');
    const again = await rawPeer(ms[0]!, ms[1]!.secretKey);
    assert.equal(await again.ready, true);
    await until(() => net.connectedPeers().includes(toHex(ms[1]!.key)), 'the peer links again');
    again.ws.close();
  });

  it("a banned member's frames still waiting for the handler are not handled", async () => {
    const ms = await members(2);
    const net = network(ms[0]!, ms, { limits: { misbehaviourLimit: 3, banMs: 60_000 } });
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const handled: string[] = [];
    net.handle(async (_peer, _type, body) => {
      handled.push((body as { text: string }).text);
      await held;
    });
    await net.start();
    const peer = await rawPeer(ms[0]!, ms[1]!.secretKey);
    await peer.ready;
    await until(() => net.connectedPeers().length === 1, 'linked');
    for (let i = 0; i < 5; i++) peer.ws.send(encodeFrame('note', { text: `frame ${i}` }));
    await until(() => net.stats.queued === 4, 'the first handled, four waiting');
    for (let i = 0; i < 3; i++) peer.ws.send(Buffer.from([0xc1, 0xff, 0x00]));
    await within(peer.closed, 'the third fault to close the link');
    release();
    await sleep(50);
    assert.deepEqual([handled, net.stats.queued], [['frame 0'], 0]);
  });

  it('a forgery its handler found is a fault like a malformed frame: they add up to a ban together', async () => {
    const ms = await members(2);
    const net = network(ms[0]!, ms, { limits: { misbehaviourLimit: 4, banMs: 60_000 } });
    await net.start();
    const peer = await rawPeer(ms[0]!, ms[1]!.secretKey);
    await peer.ready;
    await until(() => net.connectedPeers().length === 1, 'linked');
    const key = toHex(ms[1]!.key);
    net.misbehaved(key, 'forged');
    net.misbehaved(key, 'forged');
    peer.ws.send(Buffer.from([0xc1, 0xff, 0x00]));
    await until(() => net.stats.dropped.malformed === 1, 'the malformed frame counted');
    assert.equal(net.stats.bans, 0, 'three faults of four');
    net.misbehaved(key, 'forged');
    await within(peer.closed, 'the fourth fault to close the link');
    assert.deepEqual([net.stats.dropped.forged, net.stats.bans], [3, 1]);
    net.misbehaved(toHex(ms[0]!.key), 'forged'); // no link: nothing to charge
  });

  it("a member's rare faults are forgotten with time: spread out they never add up to a ban, in a burst they do", async () => {
    const ms = await members(2);
    // one fault forgotten every banMs / misbehaviourLimit = 100 ms
    const net = network(ms[0]!, ms, { limits: { misbehaviourLimit: 3, banMs: 300 } });
    await net.start();
    const peer = await rawPeer(ms[0]!, ms[1]!.secretKey);
    await peer.ready;
    await until(() => net.connectedPeers().length === 1, 'linked');
    for (let i = 1; i <= 6; i++) {
      peer.ws.send(Buffer.from([0xc1, 0xff, 0x00]));
      await until(() => net.stats.dropped.malformed === i, `fault ${i} counted`);
      await sleep(250);
    }
    assert.equal(net.stats.bans, 0, 'six faults, each long after the one before');
    for (let i = 0; i < 3; i++) peer.ws.send(Buffer.from([0xc1, 0xff, 0x00]));
    await within(peer.closed, 'three faults at once to close the link');
    assert.equal(net.stats.bans, 1);
  });

  it("a member's frame rate follows its key: a new link does not bring a fresh burst", async () => {
    const ms = await members(2);
    const net = network(ms[0]!, ms, { limits: { framesPerSecond: 10, misbehaviourLimit: 10_000 } });
    let got = 0;
    net.on('message', () => got++);
    await net.start();
    const first = await rawPeer(ms[0]!, ms[1]!.secretKey);
    await first.ready;
    await until(() => net.connectedPeers().length === 1, 'first link');
    // the burst allowance: twice the rate
    for (let i = 0; i < 20; i++) first.ws.send(encodeFrame('note', { text: `first ${i}` }));
    await until(() => got + net.stats.dropped.rate_limited === 20, 'the first burst handled');
    first.ws.close();
    await until(() => net.connectedPeers().length === 0, 'first link down');
    const second = await rawPeer(ms[0]!, ms[1]!.secretKey);
    await second.ready;
    await until(() => net.connectedPeers().length === 1, 'second link');
    const before = got;
    for (let i = 0; i < 20; i++) second.ws.send(encodeFrame('note', { text: `second ${i}` }));
    await until(() => got + net.stats.dropped.rate_limited === 40, 'the second burst handled');
    assert.ok(got - before < 15, `${got - before} of the second link's 20 frames passed: the budget was refilled`);
    second.ws.close();
  });

  // Both ends dialing each other make an honest duplicate now and then; a hostile member can make
  // them at will. One kept in a closing handshake that the member never answers would hold its
  // socket and buffers for ws's 30 s close timeout, so a duplicate is dropped at once.
  it("a member's second link is dropped at once, without a closing handshake it could leave unanswered", async () => {
    const ms = await members(2);
    const net = network(ms[0]!, ms);
    await net.start();
    const kept = await rawPeer(ms[0]!, ms[1]!.secretKey);
    await kept.ready;
    await until(() => net.connectedPeers().length === 1, 'first link');
    const duplicate = await rawPeer(ms[0]!, ms[1]!.secretKey);
    assert.equal(await duplicate.ready, true);
    const [code] = (await within(duplicate.closed, 'the duplicate to be dropped')) as [number];
    assert.equal(code, 1006, 'closed by dropping the connection, not by a close frame awaiting an answer');
    assert.ok(net.connectedPeers().includes(toHex(ms[1]!.key)), 'the first link stays');
    assert.ok(kept.ws.readyState === kept.ws.OPEN);
    kept.ws.close();
  });

  it('a restarted member reconnects and the catch-up hook fires on both sides', async () => {
    const ms = await members(2);
    const a = network(ms[0]!, ms);
    let b = network(ms[1]!, ms);
    const hooks: string[] = [];
    a.on('peer', (peer: string) => hooks.push(peer));
    await Promise.all([a.start(), b.start()]);
    await until(() => a.connectedPeers().length === 1 && b.connectedPeers().length === 1, 'connected');
    await b.stop();
    await until(() => a.connectedPeers().length === 0, 'a notices');
    b = network(ms[1]!, ms);
    let bHook = 0;
    b.on('peer', () => bHook++);
    await b.start();
    await until(() => a.connectedPeers().length === 1 && bHook >= 1, 'reconnected');
    assert.equal(hooks.filter((h) => h === toHex(ms[1]!.key)).length >= 2, true);
    assert.ok(b.send(toHex(ms[0]!.key), 'note', { text: 'after restart' }));
  });

  it('checks frames and keys with plain shape validators, and dials only wss:// peers', async () => {
    assert.ok(isBytes(new Uint8Array(32), 32));
    assert.ok(!isBytes('00', 32));
    assert.throws(
      () =>
        new PeerNetwork({
          secretKey: new Uint8Array(32).fill(1),
          members: [],
          listen: { host: '127.0.0.1', port: 0 },
          peers: new Map(),
        }),
      { code: 'invalid_config' },
    );
    const [a, b] = await members(2);
    const plain = new Map([[toHex(b!.key), `ws://127.0.0.1:${b!.port}`]]);
    assert.throws(
      () =>
        new PeerNetwork({
          secretKey: a!.secretKey,
          members: [a!.key, b!.key],
          listen: { host: '127.0.0.1', port: 0 },
          peers: plain,
        }),
      /is not a wss:\/\/ URL/,
    );
  });
});
