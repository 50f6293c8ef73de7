import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { addressGroup, Admissions } from '../../../src/p2p/admission.js';
import { LINK_CAPS } from '../../../src/p2p/limits.js';

/** What Admissions reads of a socket: its remote end, 'close', destroy(). */
class FakeSocket extends EventEmitter {
  destroyed = false;
  constructor(
    readonly remoteAddress: string,
    readonly remotePort: number,
  ) {
    super();
  }
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emit('close');
  }
}

const socket = (address: string, port: number): Socket => new FakeSocket(address, port) as unknown as Socket;

describe('pending connections (Admissions)', () => {
  // Before TLS a member cannot be told from a stranger. Strangers holding every slot and reopening each
  // as the deadline closes it would keep every member's dial out for good if a full table turned new
  // connections away: a new one pushes out the oldest, so holding the slots takes outrunning handshakes.
  it('when every slot is taken, a new connection pushes out the oldest instead of being turned away', () => {
    const admissions = new Admissions(60_000, () => undefined);
    const held: Socket[] = [];
    for (let i = 0; i < LINK_CAPS.pendingConnections; i++) {
      const s = socket(`10.0.0.${i % 8}`, 1000 + i);
      assert.equal(admissions.admit(s), true);
      held.push(s);
    }
    assert.equal(admissions.size, LINK_CAPS.pendingConnections);
    const member = socket('10.1.0.1', 5000);
    assert.equal(admissions.admit(member), true, 'the newcomer is admitted');
    assert.equal(admissions.size, LINK_CAPS.pendingConnections, 'still at the cap');
    assert.equal(held[0]!.destroyed, true, 'the oldest was closed');
    assert.ok(held.slice(1).every((s) => !s.destroyed));
    // and the newcomer is not the next to go: the cap's worth of newer connections must come first
    for (let i = 0; i < LINK_CAPS.pendingConnections - 1; i++) admissions.admit(socket(`10.2.${i}.1`, 7000 + i));
    assert.equal(member.destroyed, false, 'outlived 63 newer connections');
    admissions.admit(socket('10.3.0.1', 9000));
    assert.equal(member.destroyed, true);
    admissions.closeAll();
  });

  // a stranger's silent connections, a few hundred a second from as many addresses as the rate asks,
  // pushed out every member's dial before its handshake (a few round trips) was done
  it("pushes out strangers' silent connections before one whose TLS is done", () => {
    const admissions = new Admissions(60_000, () => undefined);
    const dial = socket('10.1.0.1', 5000);
    assert.equal(admissions.admit(dial), true);
    admissions.secured(dial);
    for (let i = 0; i < 10 * LINK_CAPS.pendingConnections; i++)
      admissions.admit(socket(`10.2.${Math.floor(i / 4)}.${i % 4}`, 7000 + i));
    assert.equal(dial.destroyed, false, 'outlived ten caps of silent connections');
    admissions.closeAll();
  });

  it('pushes out strangers before a connection from an address a member linked from, even short of TLS', () => {
    const admissions = new Admissions(60_000, () => undefined);
    const first = socket('10.1.0.1', 5000);
    admissions.admit(first);
    admissions.settle(first); // its link authenticated: the address is a member's
    const again = socket('10.1.0.1', 5001);
    assert.equal(admissions.admit(again), true);
    for (let i = 0; i < 10 * LINK_CAPS.pendingConnections; i++) {
      const stranger = socket(`10.2.${Math.floor(i / 4)}.${i % 4}`, 7000 + i);
      if (admissions.admit(stranger)) admissions.secured(stranger);
    }
    assert.equal(again.destroyed, false, "outlived ten caps of strangers' connections, their TLS done");
    admissions.closeAll();
  });

  // ranked alone, a member's dial from an address not known here (its address changed, or this member
  // restarted: the set is kept in memory) was short of TLS, the only such one in a table strangers kept
  // full of connections whose TLS they finish at once: each next stranger's pushed it out, and 20 a
  // second from 32 addresses (under every per-address rate and cap) kept the member out for good
  it("lets a member's dial from a new address finish its handshake among strangers whose TLS is done", () => {
    const clock = { now: 0 };
    const admissions = new Admissions(
      60_000,
      () => undefined,
      () => undefined,
      () => clock.now,
    );
    const TLS_MS = 150; // accept to TLS done: 1.5 round trips at 100 ms
    const AUTH_MS = 250; // accept to its link's proof checked
    let port = 10_000;
    let k = 0;
    const stranger = (): void => {
      const s = socket(`203.0.113.${k++ % 32}`, port++);
      if (admissions.admit(s)) admissions.secured(s); // from close by: its TLS is done at once
    };
    for (let i = 0; i < LINK_CAPS.pendingConnections; i++) stranger();
    let dial: Socket | undefined;
    let dialAt = 0;
    let linked = false;
    for (let t = 0; t < 30_000 && !linked; t += 10) {
      clock.now = t;
      if (t % 1000 === 500) {
        // the member (re)dials once a second
        dial = socket('198.51.100.7', 40_000 + t);
        assert.equal(admissions.admit(dial), true);
        dialAt = t;
      }
      if (dial && !dial.destroyed && t - dialAt === TLS_MS) admissions.secured(dial);
      if (dial && !dial.destroyed && t - dialAt === AUTH_MS) {
        admissions.settle(dial);
        linked = true;
      }
      if (t % 50 === 0) stranger(); // 20 a second
    }
    admissions.closeAll();
    assert.equal(linked, true, 'every dial was pushed out before its handshake was done');
  });

  it('one address is still held to its own cap, pushing out nobody', () => {
    const admissions = new Admissions(60_000, () => undefined);
    const mine = Array.from({ length: LINK_CAPS.pendingPerAddress }, (_, i) => socket('10.0.0.1', 2000 + i));
    for (const s of mine) assert.equal(admissions.admit(s), true);
    assert.equal(admissions.admit(socket('10.0.0.1', 3000)), false);
    assert.ok(mine.every((s) => !s.destroyed));
    admissions.closeAll();
  });

  it("one address's new connections are held to a burst and a rate; other addresses keep theirs", () => {
    const admissions = new Admissions(60_000, () => undefined);
    const { burst } = LINK_CAPS.newConnectionsPerAddress;
    let admitted = 0;
    for (let i = 0; i < burst + 10; i++) {
      const s = socket('10.0.0.1', 2000 + i);
      if (admissions.admit(s)) admitted++;
      s.destroy(); // a connection that went away at once still spent its share of the rate
    }
    assert.equal(admitted, burst);
    assert.equal(admissions.admit(socket('::ffff:10.0.0.1', 4000)), false, 'the same address, IPv4-mapped');
    assert.equal(admissions.admit(socket('10.0.0.2', 4000)), true);
    admissions.closeAll();
  });

  it('counts an IPv6 address by its /64, and an IPv4-mapped one as the IPv4 address', () => {
    assert.equal(addressGroup('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
    assert.equal(addressGroup('2001:DB8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
    assert.equal(addressGroup('2001:db8::5'), '2001:db8:0:0::/64');
    assert.equal(addressGroup('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(addressGroup('::1'), '0:0:0:0::/64');
    assert.equal(addressGroup('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(addressGroup('192.0.2.7'), '192.0.2.7');
  });
});
