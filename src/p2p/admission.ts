import type { Socket } from 'node:net';
import { LINK_CAPS } from './limits.js';

interface Entry {
  readonly socket: Socket;
  readonly address: string;
  readonly timer: NodeJS.Timeout;
}

/**
 * Inbound connections from TCP accept until their link authenticates, counted against
 * LINK_CAPS in total and per remote address and closed at the deadline if they get no further.
 * Counting starts before TLS, so a connection that never sends a ClientHello holds a slot too.
 * Before TLS a member cannot be told from a stranger, so when every slot is taken a new connection
 * pushes out the oldest rather than being turned away: strangers reopening their connections as the
 * deadline closes them would otherwise keep every member's dial out for good, where now holding the
 * slots takes opening a cap's worth of connections within each member's handshake.
 * Entries are keyed by remote address and port: the TLS socket a link runs on reports the same
 * ones as the TCP socket under it, which is what lets the link settle its entry.
 */
export class Admissions {
  private readonly open = new Map<string, Entry>();
  private readonly perAddress = new Map<string, number>();

  constructor(
    private readonly deadlineMs: number,
    private readonly onDeadline: () => void,
    private readonly onEvict: () => void = () => undefined,
  ) {}

  get size(): number {
    return this.open.size;
  }

  /**
   * Counts `socket` in, closing the oldest pending connection when all are taken; false (caller
   * closes it) when its address has its cap.
   */
  admit(socket: Socket): boolean {
    const address = socket.remoteAddress;
    const id = connectionId(socket);
    if (address === undefined || id === undefined) return false;
    const fromAddress = this.perAddress.get(address) ?? 0;
    if (fromAddress >= LINK_CAPS.pendingPerAddress) return false;
    if (this.open.size >= LINK_CAPS.pendingConnections) this.evictOldest();
    this.perAddress.set(address, fromAddress + 1);
    const timer = setTimeout(() => {
      this.onDeadline();
      socket.destroy();
    }, this.deadlineMs);
    const entry = { socket, address, timer };
    this.open.set(id, entry);
    socket.once('close', () => this.release(id, entry));
    return true;
  }

  /** The connection under `socket` authenticated: it no longer counts, and has no deadline. */
  settle(socket: Socket): void {
    const id = connectionId(socket);
    const entry = id === undefined ? undefined : this.open.get(id);
    if (id !== undefined && entry) this.release(id, entry);
  }

  /** Closes every connection still counted (stop). */
  closeAll(): void {
    for (const entry of this.open.values()) entry.socket.destroy();
  }

  private evictOldest(): void {
    const [id, entry] = this.open.entries().next().value as [string, Entry];
    this.release(id, entry);
    this.onEvict();
    entry.socket.destroy();
  }

  private release(id: string, entry: Entry): void {
    // a port reused after close must not release its successor's entry
    if (this.open.get(id) !== entry) return;
    clearTimeout(entry.timer);
    this.open.delete(id);
    const left = (this.perAddress.get(entry.address) ?? 1) - 1;
    if (left === 0) this.perAddress.delete(entry.address);
    else this.perAddress.set(entry.address, left);
  }
}

function connectionId(socket: Socket): string | undefined {
  const { remoteAddress, remotePort } = socket;
  return remoteAddress === undefined || remotePort === undefined ? undefined : `${remoteAddress}|${remotePort}`;
}
