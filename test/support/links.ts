import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Packr } from 'msgpackr';
import WebSocket from 'ws';
import { toHex } from '../../src/bitcoin/bytes.js';
import { freePorts } from '../../src/evm/anvil.js';
import { encodeFrame } from '../../src/p2p/frames.js';
import { channelBinding, DIAL_TLS, linkAuthMessage, PeerNetwork, type NetworkLimits } from '../../src/p2p/network.js';
import { schnorrBackend } from '../../src/signing/schnorr.js';

// Member links on loopback for the p2p tests: members, their networks, and a raw peer that
// runs the handshake by hand with any key.

const backend = schnorrBackend();
const running: PeerNetwork[] = [];

/** Stops every network linkNetwork made (each test file's afterEach). */
export async function stopNetworks(): Promise<void> {
  await Promise.all(running.splice(0).map((n) => n.stop()));
}

export interface Member {
  secretKey: Uint8Array;
  key: Uint8Array;
  port: number;
}

export async function members(n: number): Promise<Member[]> {
  const ports = await freePorts(n);
  return ports.map((port) => {
    const secretKey = new Uint8Array(randomBytes(32));
    return { secretKey, key: backend.xonlyPublicKey(secretKey), port };
  });
}

export const urlOf = (m: Member): string => `wss://127.0.0.1:${m.port}`;

/** `me`'s network with 'note' frames registered; by default it dials every other member directly. */
export function linkNetwork(
  me: Member,
  all: Member[],
  options: { limits?: Partial<NetworkLimits>; peers?: Map<string, string> } = {},
): PeerNetwork {
  const peers = options.peers ?? new Map(all.filter((m) => m !== me).map((m) => [toHex(m.key), urlOf(m)]));
  const limits = { reconnectMinMs: 50, reconnectMaxMs: 300, ...options.limits };
  const listen = { host: '127.0.0.1', port: me.port };
  const net = new PeerNetwork({ secretKey: me.secretKey, members: all.map((m) => m.key), listen, peers, limits });
  net.registerType('note', (b) => typeof (b as { text?: unknown } | null)?.text === 'string');
  running.push(net);
  return net;
}

export async function until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** `promise`, or a failure naming `what` after `ms`. */
export async function within<T>(promise: Promise<T>, what: string, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A raw WebSocket client that runs our handshake with any key: a member's, or a stranger's.
 * `follow` goes out right behind the proof, before the member can have checked it.
 */
export async function rawPeer(
  target: Member,
  secretKey: Uint8Array,
  opts: { tamper?: boolean; follow?: Buffer } = {},
): Promise<{ ws: WebSocket; closed: Promise<unknown>; ready: Promise<boolean> }> {
  const ws = new WebSocket(urlOf(target), DIAL_TLS);
  const closed = once(ws, 'close');
  const key = backend.xonlyPublicKey(secretKey);
  const challenge = new Uint8Array(randomBytes(32));
  let binding: Uint8Array | undefined;
  ws.once('upgrade', (res) => (binding = channelBinding(res.socket)));
  // hello goes out on 'open' and the listener is in place first: the member's hello can
  // arrive in the same tick as 'open', and our auth must not overtake our hello
  ws.once('open', () => ws.send(encodeFrame('hello', { key, challenge })));
  const ready = new Promise<boolean>((resolve) => {
    ws.once('message', (data: Buffer) => {
      const { body } = new Packr({ useRecords: false, mapsAsObjects: true }).unpack(data) as {
        body: { key: Uint8Array; challenge: Uint8Array };
      };
      const signature = backend.sign(
        secretKey,
        linkAuthMessage(key, body.key, body.challenge, challenge, binding!),
        'random',
      );
      if (opts.tamper) signature[0]! ^= 1;
      ws.send(encodeFrame('auth', { signature }));
      if (opts.follow) ws.send(opts.follow);
      resolve(true);
    });
    ws.once('close', () => resolve(false));
  });
  await once(ws, 'open');
  return { ws, closed, ready };
}
