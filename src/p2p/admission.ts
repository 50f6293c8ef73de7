import type { Socket } from 'node:net';
import { LINK_CAPS } from './limits.js';
import { bucketOf, TokenBucket } from './ratelimit.js';

interface Entry {
  readonly socket: Socket;
  readonly address: string;
  readonly timer: NodeJS.Timeout;
  /** From an address a member's link authenticated from before (Admissions.settle). */
  readonly known: boolean;
  /** Its TLS handshake is done: whoever it is paid a key exchange of its own to get here. */
  secured: boolean;
  /** When it was admitted (the Admissions clock, ms). */
  readonly since: number;
}

/** Which pending connection goes first when all slots are taken: the lowest, the oldest of it. */
const standing = (e: Entry): number => (e.known ? 2 : 0) + (e.secured ? 1 : 0);

/**
 * Inbound connections from TCP accept until their link authenticates, counted against
 * LINK_CAPS in total and per remote address and closed at the deadline if they get no further.
 * Counting starts before TLS, so a connection that never sends a ClientHello holds a slot too.
 * Before TLS a member cannot be told from a stranger, so when every slot is taken a new connection
 * pushes out another rather than being turned away: strangers reopening their connections as the
 * deadline closes them would otherwise keep every member's dial out for good. The one pushed out is
 * the oldest of those that got least far: from an address no member's link came from before, and
 * still short of TLS, first. Pushing out the oldest alone let a stranger's silent connections, a few
 * hundred a second from as many addresses as the per-address rate asks, push out every member's dial
 * before its handshake (a few round trips) was done: now they push out only each other, and a
 * member's dial once its TLS is done, or from where a member linked before, outlasts them. And a
 * connection younger than LINK_CAPS.handshakeGraceMs is pushed out only when every other one is too:
 * ranked alone, a member's dial from an address not yet known here was the only one short of TLS in a
 * table that strangers kept full of connections whose TLS they finished at once, and a few of those a
 * second pushed out each of its dials.
 * Each address is also held to a rate of new connections, since every one that reaches TLS costs a
 * key exchange whether or not it is admitted for long.
 * Entries are keyed by remote address and port: the TLS socket a link runs on reports the same
 * ones as the TCP socket under it, which is what lets the link settle its entry.
 */
export class Admissions {
  private readonly open = new Map<string, Entry>();
  private readonly perAddress = new AddressCounts(LINK_CAPS.pendingPerAddress);
  /** New connections' rate by address (LINK_CAPS.newConnectionsPerAddress), at most trackedAddresses. */
  private readonly rates = new Map<string, TokenBucket>();
  /** Addresses members' links authenticated from, the latest last (at most LINK_CAPS.memberAddresses). */
  private readonly members = new Set<string>();

  constructor(
    private readonly deadlineMs: number,
    private readonly onDeadline: () => void,
    private readonly onEvict: () => void = () => undefined,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get size(): number {
    return this.open.size;
  }

  /**
   * Counts `socket` in, closing another pending connection when all are taken; false (caller closes
   * it) when its address is over its rate of new connections or has its cap.
   */
  admit(socket: Socket): boolean {
    const id = connectionId(socket);
    if (socket.remoteAddress === undefined || id === undefined) return false;
    const address = addressGroup(socket.remoteAddress);
    const { perSecond, burst } = LINK_CAPS.newConnectionsPerAddress;
    const rate = bucketOf(this.rates, address, LINK_CAPS.trackedAddresses, () => new TokenBucket(perSecond, burst));
    if (!rate.take()) return false;
    if (!this.perAddress.add(address)) return false;
    if (this.open.size >= LINK_CAPS.pendingConnections) this.evict();
    const timer = setTimeout(() => {
      this.onDeadline();
      socket.destroy();
    }, this.deadlineMs);
    const entry: Entry = {
      socket,
      address,
      timer,
      known: this.members.has(address),
      secured: false,
      since: this.now(),
    };
    this.open.set(id, entry);
    socket.once('close', () => this.release(id, entry));
    return true;
  }

  /** The connection under `socket` finished its TLS handshake. */
  secured(socket: Socket): void {
    const entry = this.entryOf(socket);
    if (entry) entry.secured = true;
  }

  /**
   * The connection under `socket` authenticated as a member's: it no longer counts, and has no
   * deadline; its address is one a member links from.
   */
  settle(socket: Socket): void {
    const id = connectionId(socket);
    const entry = this.entryOf(socket);
    if (id === undefined || !entry) return;
    this.release(id, entry);
    this.members.delete(entry.address);
    this.members.add(entry.address);
    if (this.members.size > LINK_CAPS.memberAddresses) this.members.delete(this.members.values().next().value!);
  }

  private entryOf(socket: Socket): Entry | undefined {
    const id = connectionId(socket);
    return id === undefined ? undefined : this.open.get(id);
  }

  /** Closes every connection still counted (stop). */
  closeAll(): void {
    for (const entry of this.open.values()) entry.socket.destroy();
  }

  private evict(): void {
    const settled = this.now() - LINK_CAPS.handshakeGraceMs;
    let victim: [string, Entry] | undefined;
    // oldest first, in the order admitted; past its grace first
    for (const pair of this.open) {
      const [, e] = pair;
      const better = (v: Entry): boolean => {
        const [past, vPast] = [e.since <= settled, v.since <= settled];
        return past !== vPast ? past : standing(e) < standing(v);
      };
      if (!victim || better(victim[1])) victim = pair;
    }
    const [id, entry] = victim!;
    this.release(id, entry);
    this.onEvict();
    entry.socket.destroy();
  }

  private release(id: string, entry: Entry): void {
    // a port reused after close must not release its successor's entry
    if (this.open.get(id) !== entry) return;
    clearTimeout(entry.timer);
    this.open.delete(id);
    this.perAddress.remove(entry.address);
  }
}

/** How many connections each address holds, each held to `cap`; an address holding none is not kept. */
export class AddressCounts {
  private readonly counts = new Map<string, number>();

  constructor(private readonly cap: number) {}

  /** Counts one more connection from `address`; false, counting nothing, when it has its cap. */
  add(address: string): boolean {
    const held = this.counts.get(address) ?? 0;
    if (held >= this.cap) return false;
    this.counts.set(address, held + 1);
    return true;
  }

  /** One connection from `address` closed. */
  remove(address: string): void {
    const left = (this.counts.get(address) ?? 1) - 1;
    if (left === 0) this.counts.delete(address);
    else this.counts.set(address, left);
  }
}

function connectionId(socket: Socket): string | undefined {
  const { remoteAddress, remotePort } = socket;
  return remoteAddress === undefined || remotePort === undefined ? undefined : `${remoteAddress}|${remotePort}`;
}

/**
 * What connections are counted by: an IPv4 address (also when it arrives IPv4-mapped), or the /64 of
 * an IPv6 one, which a single host is usually given whole and can move through at will.
 */
export function addressGroup(address: string): string {
  const bare = address.split('%')[0]!.toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(bare);
  if (mapped) return mapped[1]!;
  if (!bare.includes(':')) return bare;
  const [head = '', tail] = bare.split('::');
  const words = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const full =
    tail === undefined
      ? words(head)
      : [
          ...words(head),
          ...Array<string>(Math.max(0, 8 - words(head).length - words(tail).length)).fill('0'),
          ...words(tail),
        ];
  return `${full
    .slice(0, 4)
    .map((w) => parseInt(w, 16).toString(16))
    .join(':')}::/64`;
}
