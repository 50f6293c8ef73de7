import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import WebSocket from 'ws';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { DIAL_TLS } from '../../../src/p2p/network.js';
import { linkNetwork as network, members, stopNetworks, until, urlOf, within } from '../../support/links.js';

afterEach(stopNetworks);

const TLS_APPLICATION_DATA = 0x17;

/**
 * A TCP relay to `port` on loopback. Once armed, it flips one byte in the middle of the next TLS
 * application-data record going from the dialer to the listener, then relays faithfully again.
 */
async function tamperingProxy(port: number): Promise<{ server: Server; port: number; arm(): void; flipped(): number }> {
  let armed = false;
  let flipped = 0;
  const server = createServer((client: Socket) => {
    const upstream = connect(port, '127.0.0.1');
    let pending = Buffer.alloc(0);
    client.on('data', (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      // forward whole records only, so the one to tamper with can be picked out
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt16BE(3)) {
        const record = Buffer.from(pending.subarray(0, 5 + pending.readUInt16BE(3)));
        pending = pending.subarray(record.length);
        if (armed && record[0] === TLS_APPLICATION_DATA) {
          armed = false;
          flipped++;
          record[5 + Math.floor((record.length - 5) / 2)]! ^= 0x01;
        }
        upstream.write(record);
      }
    });
    upstream.pipe(client);
    const end = (): void => void (client.destroy(), upstream.destroy());
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  return {
    server,
    port: typeof address === 'object' && address ? address.port : 0,
    arm: () => (armed = true),
    flipped: () => flipped,
  };
}

describe('links are bound to their TLS channel', { timeout: 30_000 }, () => {
  it('an outsider relaying hellos and proofs between its own TLS sessions with two members is authenticated by neither', async () => {
    const ms = await members(2);
    // no dialing: neither has a link to the other that would make the relay pointless
    const [a, b] = ms.map((m) => network(m, ms, { peers: new Map() }));
    const readied: string[] = [];
    const reasons: string[] = [];
    for (const n of [a!, b!]) {
      n.on('peer', (peer: string) => readied.push(peer));
      n.on('refused', (reason: string) => reasons.push(reason));
    }
    await Promise.all([a!.start(), b!.start()]);

    const toA = new WebSocket(urlOf(ms[0]!), DIAL_TLS);
    const toB = new WebSocket(urlOf(ms[1]!), DIAL_TLS);
    const bothOpen = Promise.all([once(toA, 'open'), once(toB, 'open')]);
    const relayed = { toA: 0, toB: 0 };
    // every frame one member sends goes verbatim to the other: its hello, then its proof
    toA.on('message', (data: Buffer) => void bothOpen.then(() => (toB.send(data), relayed.toB++)));
    toB.on('message', (data: Buffer) => void bothOpen.then(() => (toA.send(data), relayed.toA++)));
    try {
      const closed = Promise.all([once(toA, 'close'), once(toB, 'close')]);
      await within(
        Promise.race([closed, once(a!, 'peer'), once(b!, 'peer')]),
        'the members to close the relayed connections',
      );
    } finally {
      toA.terminate();
      toB.terminate();
    }

    // both hellos and both proofs went across: the attack ran to its end
    assert.ok(relayed.toA >= 2 && relayed.toB >= 2, `relayed ${JSON.stringify(relayed)}`);
    assert.deepEqual(readied, []);
    assert.deepEqual([a!.connectedPeers(), b!.connectedPeers()], [[], []]);
    assert.ok(a!.stats.handshakeFailures >= 1 && b!.stats.handshakeFailures >= 1);
    assert.ok(reasons.includes('bad handshake signature'), reasons.join('; '));
  });

  it('a byte flipped in a TLS record after the handshake closes the link; it comes back and frames flow', async () => {
    const ms = await members(2);
    const proxy = await tamperingProxy(ms[1]!.port);
    // a dials b through the proxy; b dials nobody, so the only link is the proxied one
    const a = network(ms[0]!, ms, { peers: new Map([[toHex(ms[1]!.key), `wss://127.0.0.1:${proxy.port}`]]) });
    const b = network(ms[1]!, ms, { peers: new Map() });
    const got: string[] = [];
    let downs = 0;
    b.on('message', (_from: string, _type: string, body: { text: string }) => got.push(body.text));
    b.on('peer_down', () => downs++);
    // each side marks the link up when its own half of the handshake ends, and a send before that
    // is refused: a link is up when both ends say so
    const linked = (): boolean => a.connectedPeers().length === 1 && b.connectedPeers().length === 1;
    try {
      await Promise.all([a.start(), b.start()]);
      await until(linked, 'link through the proxy');
      assert.ok(a.send(toHex(ms[1]!.key), 'note', { text: 'before' }));
      await until(() => got.includes('before'), 'a frame before tampering');

      proxy.arm();
      assert.ok(a.send(toHex(ms[1]!.key), 'note', { text: 'tampered' }));
      await until(() => downs === 1, 'b drops the link');
      assert.equal(proxy.flipped(), 1);
      assert.ok(!got.includes('tampered'), 'the tampered record delivered nothing');

      await until(linked, 'redialed');
      assert.ok(a.send(toHex(ms[1]!.key), 'note', { text: 'after' }));
      await until(() => got.includes('after'), 'a frame on the new link');
    } finally {
      await Promise.all([a.stop(), b.stop()]);
      proxy.server.close();
    }
  });
});
