import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { LINK_CAPS } from '../../../src/p2p/limits.js';
import { linkNetwork as network, members, stopNetworks, until, type Member } from '../../support/links.js';

afterEach(stopNetworks);

/** One-way delay each relay adds: 100 ms round trips, an ordinary WAN between two members. */
const DELAY_MS = 50;
/** Silent TCP connections a second the outsider opens at each member. */
const RATE = 400;
/** Source addresses it spreads them over: each stays under its per-address rate and pending cap at each member. */
const ADDRESSES = 150;
const FLOOD_MS = 8_000;
/** How long two members may take to link while flooded: ten times what they take unflooded (~0.3 s). */
const LINK_BOUND_MS = 3_000;

/** A TCP relay to `port` on loopback that delays every chunk by DELAY_MS each way (the WAN between members). */
async function wan(port: number): Promise<{ server: Server; url: string }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    for (const s of [client, upstream]) sockets.add(s);
    const relay = (from: Socket, to: Socket): void =>
      void from.on('data', (d: Buffer) => setTimeout(() => to.destroyed || to.write(d), DELAY_MS));
    relay(client, upstream);
    relay(upstream, client);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('close', end).on('error', end);
    upstream.on('close', end).on('error', end);
  });
  server.on('close', () => sockets.forEach((s) => s.destroy()));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  return { server, url: `wss://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}` };
}

/**
 * An outsider, in its own process, opening RATE silent TCP connections a second at each port from
 * ADDRESSES loopback addresses, sending nothing, for FLOOD_MS; it exits by itself.
 */
const FLOOD = `
import { connect } from 'node:net';
const [ports, ms, rate, addresses] = [process.argv[1].split(',').map(Number), ...process.argv.slice(2).map(Number)];
let opened = 0;
const tick = setInterval(() => {
  for (let k = 0; k < rate / 100; k++)
    for (const port of ports) {
      const localAddress = '127.0.1.' + (1 + (Math.floor(opened / ports.length) % addresses));
      opened++;
      connect({ host: '127.0.0.1', port, localAddress }).on('error', () => {});
    }
}, 10);
setTimeout(() => { clearInterval(tick); console.log(opened + ' connections opened'); process.exit(0); }, ms);
`;

// An outsider (no key) opening silent TCP connections, pushing out the oldest pending connection each
// time the slots were full, pushed out every member's dial before its handshake was done (admission.ts).
describe('links under a flood of silent connections', { timeout: 60_000 }, () => {
  it('an outsider opening silent TCP connections at a few hundred a second from 150 addresses does not keep two members from linking', async (t) => {
    const ms = await members(2);
    const [h, x] = ms as [Member, Member];
    const relays = [await wan(h.port), await wan(x.port)];
    const viaWan = (to: Member): Map<string, string> => new Map([[toHex(to.key), relays[to === h ? 0 : 1]!.url]]);
    try {
      // unflooded, over the same WAN, they link in a few round trips
      const H = network(h, ms, { peers: viaWan(x) });
      let X = network(x, ms, { peers: viaWan(h) });
      let start = Date.now();
      await Promise.all([H.start(), X.start()]);
      await until(() => H.connectedPeers().length === 1 && X.connectedPeers().length === 1, 'linking unflooded');
      t.diagnostic(`unflooded, linked in ${Date.now() - start} ms`);
      await X.stop();
      await until(() => H.connectedPeers().length === 0, 'the link down');

      const child = spawn(process.execPath, [
        '--input-type=module',
        '-e',
        FLOOD,
        `${h.port},${x.port}`,
        String(FLOOD_MS),
        String(RATE),
        String(ADDRESSES),
      ]);
      let said = '';
      child.stdout.on('data', (d: Buffer) => (said += d.toString()));
      const exited = once(child, 'exit');
      try {
        await until(() => H.stats.pending >= LINK_CAPS.pendingConnections, 'the flood filling the pending slots');
        X = network(x, ms, { peers: viaWan(h) });
        start = Date.now();
        await X.start();
        let linkedAfter: number | undefined;
        await until(() => H.connectedPeers().length === 1, 'linking while flooded', FLOOD_MS - 1_000)
          .then(() => (linkedAfter = Date.now() - start))
          .catch(() => undefined);
        await exited;
        t.diagnostic(
          `${said.trim()} (${RATE}/s at each member, ${(RATE / ADDRESSES).toFixed(1)}/s per address, under its ` +
            `${LINK_CAPS.newConnectionsPerAddress.perSecond}/s); linked ${linkedAfter === undefined ? 'never' : `after ${linkedAfter} ms`}; ` +
            `evicted ${H.stats.evicted} at one, ${X.stats.evicted} at the other; turned away ${H.stats.turnedAway + X.stats.turnedAway}`,
        );
        assert.ok(
          linkedAfter !== undefined && linkedAfter <= LINK_BOUND_MS,
          `two members did not link within ${LINK_BOUND_MS} ms while flooded (${linkedAfter === undefined ? `not in ${FLOOD_MS - 1_000} ms` : `${linkedAfter} ms`}): ` +
            `every attempt was evicted from the pending slots before its handshake finished`,
        );
      } finally {
        if (child.exitCode === null) child.kill();
      }
    } finally {
      for (const r of relays) r.server.close();
    }
  });
});
