import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import WebSocket, { WebSocketServer } from 'ws';
import { compare, concat, toHex } from '../bitcoin/bytes.js';
import * as stages from '../metrics/stages.js';
import { schnorrBackend, type SchnorrBackend } from '../signing/schnorr.js';
import { Admissions } from './admission.js';
import { linkCertificate, type LinkCertificate } from './certificate.js';
import { P2pError } from './errors.js';
import { decodeFrame, encodeFrame, isBytes, type FrameFault } from './frames.js';
import { LINK_CAPS } from './limits.js';
import { bucketOf, TokenBucket } from './ratelimit.js';

export interface NetworkLimits {
  /** Largest frame accepted, bytes. */
  readonly maxFrameBytes: number;
  readonly framesPerSecond: number;
  readonly bytesPerSecond: number;
  /**
   * Main-thread CPU milliseconds decoding one peer's frames may take a second, ten seconds' worth saved up.
   * What msgpack costs to decode varies a hundredfold with how dense it is (a byte of an empty map
   * against a transaction's bytes), so the byte budget alone let one member's frames take the whole
   * event loop; an honest member's busiest frames (a round's 1,000-output payments, a reconnect's
   * announcements) take a few milliseconds each.
   */
  readonly decodeMsPerSecond: number;
  /**
   * Dropped frames after which a peer is disconnected and banned; the count forgets one fault every
   * banMs / misbehaviourLimit, so an honest peer's rare fault never adds up to a ban over months.
   */
  readonly misbehaviourLimit: number;
  readonly banMs: number;
  /** From TCP accept (inbound) or dial (outbound) to an authenticated link. */
  readonly handshakeTimeoutMs: number;
  readonly reconnectMinMs: number;
  readonly reconnectMaxMs: number;
  /**
   * An authenticated link is pinged this often, and closed when neither a frame nor a pong came
   * back since the ping before: a connection the network dropped without a close is noticed, and
   * the peer's new link is not refused as a duplicate of a dead one.
   */
  readonly keepaliveMs: number;
}

export const DEFAULT_LIMITS: NetworkLimits = {
  maxFrameBytes: 4 * 1024 * 1024,
  framesPerSecond: 500,
  bytesPerSecond: 16 * 1024 * 1024,
  decodeMsPerSecond: 200,
  misbehaviourLimit: 20,
  banMs: 60_000,
  handshakeTimeoutMs: 5_000,
  reconnectMinMs: 200,
  reconnectMaxMs: 10_000,
  keepaliveMs: 15_000,
};

export interface NetworkOptions {
  readonly secretKey: Uint8Array;
  /** Every member's x-only key, this member's included. */
  readonly members: readonly Uint8Array[];
  readonly listen: { readonly host: string; readonly port: number };
  /** Peers to dial: x-only key hex → wss:// URL. */
  readonly peers: ReadonlyMap<string, string>;
  readonly limits?: Partial<NetworkLimits>;
  /** The listener's TLS certificate; by default a fresh self-signed one at each start. */
  readonly certificate?: LinkCertificate;
}

export interface NetworkStats {
  connected: number;
  /** Inbound connections not yet authenticated (at most LINK_CAPS.pendingConnections). */
  readonly pending: number;
  /** Inbound connections closed on accept because their address had its pending cap. */
  turnedAway: number;
  /** Pending inbound connections closed to make room for a newer one (admission.ts). */
  evicted: number;
  /** Frames waiting for the frame handler, all peers together. */
  queued: number;
  framesIn: number;
  framesOut: number;
  dropped: Record<FrameFault, number>;
  handshakeFailures: number;
  bans: number;
}

const AUTH_TAG = 'pegout/link-auth';
const CLOSE_POLICY = 1008;

/**
 * Links run TLS 1.3 only: its exporter is the channel binding RFC 9266 defines (earlier
 * versions' is safe only with the extended master secret). Certificates are self-signed and go
 * unchecked, because what authenticates a peer is its member key's proof over that binding.
 */
const TLS_VERSIONS = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;
export const DIAL_TLS = { ...TLS_VERSIONS, rejectUnauthorized: false } as const;

/** RFC 9266 tls-exporter: the same at both ends of one TLS 1.3 session, unrelated on any other. */
export function channelBinding(socket: Socket): Uint8Array | undefined {
  if (!(socket instanceof TLSSocket) || socket.getProtocol() !== 'TLSv1.3') return undefined;
  return new Uint8Array(socket.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)));
}

/**
 * What `signer` signs to prove its key to `verifier`: both keys, both fresh challenges and the
 * link's channel binding. The binding makes a proof worthless on any other TLS session, so an
 * outsider relaying hellos and proofs between its own sessions with two members gets nowhere.
 */
export function linkAuthMessage(
  signer: Uint8Array,
  verifier: Uint8Array,
  verifierChallenge: Uint8Array,
  signerChallenge: Uint8Array,
  binding: Uint8Array,
): Uint8Array {
  return schnorrBackend().taggedHash(AUTH_TAG, concat([signer, verifier, verifierChallenge, signerChallenge, binding]));
}

/** Handles one frame; the network awaits it before handing over the same peer's next one. */
export type FrameHandler = (peer: string, type: string, body: unknown) => Promise<void>;

/** One peer's frames waiting for the handler. */
interface Inbox {
  readonly frames: { readonly type: string; readonly body: unknown; readonly bytes: number }[];
  /** Bytes of the waiting frames and of the one being handled. */
  bytes: number;
  draining: boolean;
}

/**
 * What an authenticated member may send, and the faults it has made, kept by its key for the life
 * of this process: a member that closes its link and dials again starts where it left off, not
 * with a fresh burst and a clean record.
 */
interface PeerBudget {
  readonly frames: TokenBucket;
  readonly bytes: TokenBucket;
  /** Milliseconds of decoding (NetworkLimits.decodeMsPerSecond). */
  readonly decode: TokenBucket;
  /** Its faults: one token each, misbehaviourLimit − 1 in hand, refilled over banMs; none left is a ban. */
  readonly faults: TokenBucket;
}

interface Link {
  readonly ws: WebSocket;
  readonly outbound: boolean;
  readonly challenge: Uint8Array;
  /** The TLS socket under the link: known on accept, or at the upgrade of a dial. */
  channel?: Socket;
  binding?: Uint8Array;
  /** Stops counting the bytes the peer sends before it authenticates. */
  unmeter?: () => void;
  /** It sent more than LINK_CAPS.handshakeBytes before authenticating. */
  overBudget?: boolean;
  peer?: Uint8Array;
  peerChallenge?: Uint8Array;
  ready: boolean;
  /** Set once the link is being closed for misbehaviour: frames still queued are ignored. */
  closing: boolean;
  /** Its member's budget, once authenticated. */
  budget?: PeerBudget;
  /** Outbound only: an inbound link's deadline runs from accept, in Admissions. */
  timer?: NodeJS.Timeout;
  /** Once authenticated: pings it (NetworkLimits.keepaliveMs). */
  keepalive?: NodeJS.Timeout;
  /** A frame or a pong came since the last ping. */
  heard?: boolean;
}

/**
 * Authenticated links between federation members, over TLS 1.3. Every member listens on one
 * port and dials the others. A link carries nothing until both ends proved, by a Schnorr
 * signature over the other's fresh challenge bound to both keys and to the TLS channel, that
 * they hold a member key. After that, frames are msgpack envelopes of registered types; anything
 * malformed, unknown, oversized or over the rate is dropped and counted, and a peer that keeps
 * it up is disconnected and banned. What a peer can make a member hold is capped (LINK_CAPS).
 *
 * Events: 'peer' (key hex) when a link becomes ready — the node's catch-up hook — 'peer_down',
 * 'message' (key hex, type, body) for each frame accepted, 'refused' (reason) for a failed
 * handshake, 'banned' (key hex), 'handler_failed' (key hex, error) when the handler rejects,
 * 'server_error' (text) when the listening link server reports an error and goes on.
 */
export class PeerNetwork extends EventEmitter {
  private readonly limits: NetworkLimits;
  private readonly backend: SchnorrBackend = schnorrBackend();
  private readonly myKey: Uint8Array;
  private readonly memberSet: Set<string>;
  private readonly validators = new Map<string, (body: unknown) => boolean>();
  private readonly links = new Map<string, Link>();
  private readonly pending = new Set<Link>();
  private readonly admissions: Admissions;
  private readonly inboxes = new Map<string, Inbox>();
  private handler?: FrameHandler;
  private readonly bans = new Map<string, number>();
  /** By member key; only authenticated members have one, so at most one per member. */
  private readonly budgets = new Map<string, PeerBudget>();
  private readonly dialing = new Map<string, { attempt: number; timer?: NodeJS.Timeout }>();
  private https?: Server;
  private server?: WebSocketServer;
  private stopped = false;
  readonly stats: NetworkStats;

  constructor(private readonly options: NetworkOptions) {
    super();
    this.limits = { ...DEFAULT_LIMITS, ...options.limits };
    this.myKey = this.backend.xonlyPublicKey(options.secretKey);
    this.memberSet = new Set(options.members.map(toHex));
    if (!this.memberSet.has(toHex(this.myKey)))
      throw new P2pError('invalid_config', `this member's key ${toHex(this.myKey)} is not in the member list`);
    for (const [key, url] of options.peers) {
      if (!this.memberSet.has(key)) throw new P2pError('invalid_config', `peer ${key} is not a federation member`);
      if (!url.startsWith('wss://')) throw new P2pError('invalid_config', `peer ${key}: ${url} is not a wss:// URL`);
    }
    const admissions = new Admissions(
      this.limits.handshakeTimeoutMs,
      () => this.refused('handshake timed out'),
      () => this.stats.evicted++,
    );
    this.admissions = admissions;
    this.stats = {
      connected: 0,
      get pending() {
        return admissions.size;
      },
      turnedAway: 0,
      evicted: 0,
      queued: 0,
      framesIn: 0,
      framesOut: 0,
      dropped: {
        malformed: 0,
        wrong_version: 0,
        unknown_type: 0,
        bad_body: 0,
        oversized: 0,
        rate_limited: 0,
        unauthenticated: 0,
        queue_full: 0,
        slow_peer: 0,
        forged: 0,
      },
      handshakeFailures: 0,
      bans: 0,
    };
  }

  get key(): string {
    return toHex(this.myKey);
  }

  /** Declares a message type and the check its body must pass; other types are dropped. */
  registerType(type: string, validate: (body: unknown) => boolean): void {
    this.validators.set(type, validate);
  }

  /**
   * Hands every accepted frame to `handler`, one peer's frames one at a time and in order. At
   * most LINK_CAPS.queuedFrames (and queuedBytes) of a peer's wait; frames past that are dropped
   * and counted as 'queue_full', so a peer sending faster than this member handles cannot grow
   * its memory. Without a handler, frames only go out as 'message' events.
   */
  handle(handler: FrameHandler): void {
    this.handler = handler;
  }

  async start(): Promise<number> {
    const certificate = this.options.certificate ?? (await linkCertificate());
    const https = createServer({ ...certificate, ...TLS_VERSIONS });
    this.https = https;
    https.on('connection', (socket: Socket) => {
      if (this.admissions.admit(socket)) return;
      this.stats.turnedAway++;
      socket.destroy();
    });
    https.on('secureConnection', (socket: Socket) => this.admissions.secured(socket));
    // the port serves WebSocket upgrades only: Node parses every request pipelined on a connection,
    // and unanswered each was kept until the admission deadline (a stranger's one connection held
    // hundreds of MB), so the first plain request ends its connection
    https.on('request', (req: IncomingMessage) => req.socket.destroy());
    const where = `${this.options.listen.host}:${this.options.listen.port}`;
    await new Promise<void>((resolve, reject) => {
      https.once('listening', resolve);
      https.once('error', (err) => reject(new P2pError('listen_failed', `cannot listen on ${where}: ${err.message}`)));
      https.listen(this.options.listen.port, this.options.listen.host);
    });
    // Made once listening: a WebSocketServer re-emits its HTTP server's errors, and one that failed
    // to listen would have crashed the process with an unhandled 'error' instead of refusing to
    // start. Once listening, the server's errors (an accept that failed: out of descriptors, say)
    // leave it listening; they are reported, never fatal.
    https.on('error', (err) => this.emit('server_error', `link server on ${where}: ${err.message}`));
    const server = new WebSocketServer({ server: https, maxPayload: this.limits.maxFrameBytes });
    server.on('error', () => {}); // the same error, reported above from the HTTP server
    this.server = server;
    server.on('connection', (ws: WebSocket, req: IncomingMessage) => this.bind(this.attach(ws, false), req.socket));
    for (const peer of this.options.peers.keys()) this.schedule(peer, 0);
    const address = https.address();
    return typeof address === 'object' && address ? address.port : this.options.listen.port;
  }

  /** Peers with an authenticated link, and peers banned for misbehaving, by x-only key; the others are down. */
  linkStates(): Map<string, 'connected' | 'banned'> {
    const states = new Map<string, 'connected' | 'banned'>();
    for (const [peer, until] of this.bans) if (until > Date.now()) states.set(peer, 'banned');
    for (const peer of this.links.keys()) states.set(peer, 'connected');
    return states;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const d of this.dialing.values()) clearTimeout(d.timer);
    for (const link of [...this.links.values(), ...this.pending]) link.ws.terminate();
    this.admissions.closeAll();
    this.server?.close();
    await new Promise<void>((resolve) => (this.https ? this.https.close(() => resolve()) : resolve()));
  }

  connectedPeers(): string[] {
    return [...this.links.keys()];
  }

  send(peer: string, type: string, body: unknown): boolean {
    return this.sendFrame(peer, () => encodeFrame(type, body));
  }

  /**
   * Charges `peer` a fault its frame's handler found (the frame decoded and passed its type's check):
   * like a malformed frame, it spends the peer's fault budget, and a peer with none left is banned.
   */
  misbehaved(peer: string, fault: 'forged'): void {
    const link = this.links.get(peer);
    if (link) this.drop(link, fault);
  }

  /** Sends one frame to every authenticated peer: encoded once, however many peers (a payment is large). */
  broadcast(type: string, body: unknown): number {
    let frame: Uint8Array | undefined;
    const encoded = (): Uint8Array => (frame ??= encodeFrame(type, body));
    let sent = 0;
    for (const peer of this.links.keys()) if (this.sendFrame(peer, encoded)) sent++;
    return sent;
  }

  private sendFrame(peer: string, frame: () => Uint8Array): boolean {
    const link = this.links.get(peer);
    if (!link?.ready || link.ws.readyState !== WebSocket.OPEN) return false;
    // msgpack, WebSocket framing (masking on dialed links) and TLS encryption all happen in this call
    stages.time('links_msgpack', () => link.ws.send(frame()));
    this.stats.framesOut++;
    if (link.ws.bufferedAmount > LINK_CAPS.outboundBytes) {
      this.stats.dropped.slow_peer++;
      link.ws.terminate();
    }
    return true;
  }

  /**
   * Dials `peer` after `delay`, later still when this member's key is the higher of the two.
   * Both ends dial, and when both links come up one is closed as a duplicate: a frame sent on
   * it in the meantime is lost. The lower key dials first, so the higher one usually finds the
   * link already there; its own dial is the fallback for a peer that cannot reach it.
   */
  private schedule(peer: string, delay: number): void {
    const state = this.dialing.get(peer) ?? { attempt: 0 };
    this.dialing.set(peer, state);
    const grace = peer < this.key ? HIGHER_KEY_GRACE * this.limits.reconnectMinMs : 0;
    clearTimeout(state.timer);
    if (delay + grace === 0) this.dial(peer);
    else state.timer = setTimeout(() => this.dial(peer), delay + grace);
  }

  /** Only through schedule(), which keeps the peer's redial state. */
  private dial(peer: string): void {
    if (this.stopped || this.links.has(peer)) return;
    const state = this.dialing.get(peer)!;
    const ws = new WebSocket(this.options.peers.get(peer)!, { ...DIAL_TLS, maxPayload: this.limits.maxFrameBytes });
    const link = this.attach(ws, true, peer);
    ws.once('upgrade', (res: IncomingMessage) => this.bind(link, res.socket));
    // outbound links are redialed by their dialer; a kept inbound link's dialer is the peer
    ws.once('close', () => {
      if (this.stopped || this.links.has(peer)) return;
      const delay = Math.min(this.limits.reconnectMaxMs, this.limits.reconnectMinMs * 2 ** state.attempt);
      state.attempt = Math.min(state.attempt + 1, 16);
      this.schedule(peer, delay / 2 + Math.random() * (delay / 2));
    });
  }

  private attach(ws: WebSocket, outbound: boolean, expected?: string): Link {
    const link: Link = {
      ws,
      outbound,
      challenge: new Uint8Array(randomBytes(32)),
      ready: false,
      closing: false,
    };
    this.pending.add(link);
    if (outbound) link.timer = setTimeout(() => this.fail(link, 'handshake timed out'), this.limits.handshakeTimeoutMs);
    const hello = (): void => void ws.send(encodeFrame('hello', { key: this.myKey, challenge: link.challenge }));
    if (ws.readyState === WebSocket.OPEN) hello();
    else ws.once('open', hello);
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      try {
        stages.time('links_msgpack', () => this.receive(link, isBinary ? data : Buffer.from(data), expected));
      } catch {
        this.drop(link, 'malformed');
      }
    });
    ws.on('error', (err: Error) => {
      if (/max payload/i.test(err.message)) this.drop(link, 'oversized');
    });
    ws.on('close', () => this.detach(link));
    return link;
  }

  /**
   * Ties `link` to the TLS socket under it: the channel binding its proofs sign, and a byte
   * budget until it authenticates, so a stranger cannot park a maximum-size frame per connection.
   */
  private bind(link: Link, socket: Socket): void {
    link.channel = socket;
    link.binding = channelBinding(socket);
    let bytes = 0;
    const meter = (chunk: Buffer): void => {
      bytes += chunk.length;
      if (bytes <= LINK_CAPS.handshakeBytes) return;
      socket.off('data', meter);
      link.overBudget = true;
      // judged once ws has parsed this chunk too: an honest peer's first frames may share it
      // with the proof that makes the link ready
      setImmediate(() => this.pending.has(link) && link.ws.readyState === WebSocket.OPEN && this.failOverBudget(link));
    };
    // ahead of ws's own reader, so a frame parsed from this chunk already sees it counted
    socket.prependListener('data', meter);
    link.unmeter = () => socket.off('data', meter);
  }

  private failOverBudget(link: Link): void {
    this.fail(link, `more than ${LINK_CAPS.handshakeBytes} bytes before authenticating`);
  }

  private receive(link: Link, data: Buffer, expected: string | undefined): void {
    if (link.closing) return;
    link.heard = true;
    if (!link.ready) return this.handshake(link, data, expected);
    const budget = link.budget!;
    // the decoding budget is charged after, with the CPU decoding took (stages.clockNs: the thread's
    // CPU, which a crowded run queue does not inflate): in debt, nothing more is decoded
    if (!budget.frames.take() || !budget.bytes.take(data.length) || !budget.decode.take(0))
      return this.drop(link, 'rate_limited');
    const started = stages.clockNs();
    const frame = decodeFrame(data, this.validators);
    budget.decode.charge((stages.clockNs() - started) / 1e6);
    if (typeof frame === 'string') return this.drop(link, frame);
    const peer = toHex(link.peer!);
    if (this.handler && !this.enqueue(peer, frame.type, frame.body, data.length)) {
      // not misbehaviour: an honest peer's burst can meet a slow moment here
      this.stats.dropped.queue_full++;
      return;
    }
    this.stats.framesIn++;
    this.emit('message', peer, frame.type, frame.body);
  }

  /** Queues a frame for the handler; false when the peer's inbox is full. */
  private enqueue(peer: string, type: string, body: unknown, bytes: number): boolean {
    const inbox = this.inboxes.get(peer) ?? { frames: [], bytes: 0, draining: false };
    this.inboxes.set(peer, inbox);
    if (inbox.frames.length >= LINK_CAPS.queuedFrames || inbox.bytes + bytes > LINK_CAPS.queuedBytes) return false;
    inbox.frames.push({ type, body, bytes });
    inbox.bytes += bytes;
    this.stats.queued++;
    if (!inbox.draining) void this.drain(peer, inbox);
    return true;
  }

  private async drain(peer: string, inbox: Inbox): Promise<void> {
    inbox.draining = true;
    // once stopped, frames still waiting go unhandled: what handles them is stopping too
    for (let next = inbox.frames.shift(); next && !this.stopped; next = inbox.frames.shift()) {
      this.stats.queued--;
      try {
        await this.handler!(peer, next.type, next.body);
      } catch (err) {
        this.emit('handler_failed', peer, err);
      }
      inbox.bytes -= next.bytes;
    }
    inbox.draining = false;
  }

  private handshake(link: Link, data: Buffer, expected: string | undefined): void {
    // not decoded: what dense msgpack costs to decode is far more than its bytes, and a hello or proof
    // is a few hundred. libuv can read a whole oversized frame before the budget's check runs
    if (data.length > LINK_CAPS.handshakeBytes) return this.failOverBudget(link);
    const frame = decodeFrame(data, HANDSHAKE_TYPES);
    if (typeof frame === 'string') {
      this.stats.dropped[frame === 'unknown_type' ? 'unauthenticated' : frame]++;
      // frames under the budget that together are over it: the budget is still what this connection broke
      if (link.overBudget) return this.failOverBudget(link);
      return this.fail(link, `handshake frame refused (${frame})`);
    }
    if (!link.binding) return this.fail(link, 'not a TLS 1.3 channel');
    if (frame.type === 'hello') {
      if (link.peer) return this.fail(link, 'second hello');
      const { key, challenge } = frame.body as { key: Uint8Array; challenge: Uint8Array };
      const hex = toHex(key);
      if (!this.memberSet.has(hex) || hex === this.key)
        return this.fail(link, `key ${hex} is not another federation member`);
      if (expected && hex !== expected) return this.fail(link, `dialed ${expected} but ${hex} answered`);
      if ((this.bans.get(hex) ?? 0) > Date.now()) return this.fail(link, `peer ${hex} is banned`);
      link.peer = Uint8Array.from(key);
      link.peerChallenge = Uint8Array.from(challenge);
      const message = linkAuthMessage(this.myKey, link.peer, link.peerChallenge, link.challenge, link.binding);
      link.ws.send(encodeFrame('auth', { signature: this.backend.sign(this.options.secretKey, message, 'random') }));
      return;
    }
    // 'auth': the peer signed our fresh challenge on this channel
    if (!link.peer || !link.peerChallenge) return this.fail(link, 'auth before hello');
    const { signature } = frame.body as { signature: Uint8Array };
    const message = linkAuthMessage(link.peer, this.myKey, link.challenge, link.peerChallenge, link.binding);
    if (!this.backend.verify(signature, message, link.peer)) return this.fail(link, 'bad handshake signature');
    this.ready(link);
  }

  private ready(link: Link): void {
    clearTimeout(link.timer);
    link.unmeter?.();
    this.pending.delete(link);
    if (!link.outbound && link.channel) this.admissions.settle(link.channel);
    const peer = toHex(link.peer!);
    const existing = this.links.get(peer);
    if (existing) {
      // both ends dialed: keep the link dialed by the lower key, on both sides alike. The other is
      // dropped at once: a closing handshake the peer never answered would hold the connection and
      // its buffers for ws's close timeout, and a hostile member can open duplicates at will
      const dialerOf = (l: Link): Uint8Array => (l.outbound ? this.myKey : l.peer!);
      if (compare(dialerOf(link), dialerOf(existing)) >= 0) {
        link.ws.terminate();
        return;
      }
      this.links.delete(peer);
      existing.ws.terminate();
    }
    link.budget = this.budgetOf(peer);
    link.ready = true;
    link.heard = true;
    link.ws.on('pong', () => (link.heard = true));
    link.keepalive = setInterval(() => {
      if (!link.heard) return void link.ws.terminate();
      link.heard = false;
      link.ws.ping();
    }, this.limits.keepaliveMs);
    this.links.set(peer, link);
    this.stats.connected = this.links.size;
    const d = this.dialing.get(peer);
    if (d) d.attempt = 0;
    this.emit('peer', peer);
  }

  private budgetOf(peer: string): PeerBudget {
    const { framesPerSecond, bytesPerSecond, decodeMsPerSecond, misbehaviourLimit, banMs } = this.limits;
    // only members authenticate, so the bound is never reached
    return bucketOf(this.budgets, peer, this.memberSet.size, () => ({
      frames: new TokenBucket(framesPerSecond, framesPerSecond * 2),
      bytes: new TokenBucket(bytesPerSecond, bytesPerSecond * 2),
      decode: new TokenBucket(decodeMsPerSecond, decodeMsPerSecond * 10),
      faults: new TokenBucket((misbehaviourLimit * 1000) / banMs, misbehaviourLimit - 1),
    }));
  }

  /** A fault on `link`; an unauthenticated one is closed by its handshake and charges no member. */
  private drop(link: Link, fault: FrameFault): void {
    this.stats.dropped[fault]++;
    const { budget } = link;
    if (!budget || budget.faults.take() || link.closing) return;
    link.closing = true;
    const peer = toHex(link.peer!);
    this.bans.set(peer, Date.now() + this.limits.banMs);
    // nor is what it sent before and still waits for the handler
    const inbox = this.inboxes.get(peer);
    for (const frame of inbox?.frames.splice(0) ?? []) {
      this.stats.queued--;
      inbox!.bytes -= frame.bytes;
    }
    this.stats.bans++;
    this.emit('banned', peer);
    link.ws.close(CLOSE_POLICY, 'misbehaving');
  }

  private refused(reason: string): void {
    this.stats.handshakeFailures++;
    this.emit('refused', reason);
  }

  private fail(link: Link, reason: string): void {
    this.refused(reason);
    clearTimeout(link.timer);
    link.ws.terminate();
  }

  private detach(link: Link): void {
    clearTimeout(link.timer);
    clearInterval(link.keepalive);
    this.pending.delete(link);
    if (!link.peer) return;
    const peer = toHex(link.peer);
    if (this.links.get(peer) === link) {
      this.links.delete(peer);
      this.stats.connected = this.links.size;
      this.emit('peer_down', peer);
    }
  }
}

/** How many reconnectMinMs the higher key of a pair waits before it dials (see schedule()). */
const HIGHER_KEY_GRACE = 4;

const HANDSHAKE_TYPES = new Map<string, (body: unknown) => boolean>([
  [
    'hello',
    (b) =>
      typeof b === 'object' &&
      b !== null &&
      isBytes((b as { key?: unknown }).key, 32) &&
      isBytes((b as { challenge?: unknown }).challenge, 32),
  ],
  ['auth', (b) => typeof b === 'object' && b !== null && isBytes((b as { signature?: unknown }).signature, 64)],
]);
