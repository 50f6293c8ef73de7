import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { EARLY_CAPS, EarlySignatures } from '../../../src/node/early-signatures.js';
import { conflictsWithAll, groupRivals } from '../../../src/node/rivals.js';
import { proposerOf, slotAt, TURN_GRACE_SLOTS, turnHeldBy } from '../../../src/node/rotation.js';

// The coordinator's pure parts: who holds the turn, which rival payments a merge must cover, and
// the bounded cache of signatures that come before their proposal.

const keys = [1, 2, 3, 4].map((i) => new Uint8Array(32).fill(i));
const hex = keys.map(toHex);

describe('proposer rotation', () => {
  it('gives slot s to the s-th key in order, every member computing the same from its clock', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 9].map((s) => proposerOf(s, keys)),
      [hex[0], hex[1], hex[2], hex[3], hex[0], hex[1], hex[1]],
    );
    assert.equal(slotAt(2999, 1000), 2);
    assert.equal(slotAt(3000, 1000), 3);
  });

  it('lets a member hold the turn only in its own slot and the grace after it', () => {
    const slotMs = 100;
    // member 3 (index 2) owns slot 6 (6 mod 4 = 2): times 600..699, and the grace 700..799
    assert.equal(TURN_GRACE_SLOTS, 1);
    assert.equal(turnHeldBy(hex[2]!, 650, slotMs, keys), 6);
    assert.equal(turnHeldBy(hex[2]!, 750, slotMs, keys), 6, 'within the grace');
    assert.equal(turnHeldBy(hex[2]!, 850, slotMs, keys), undefined, 'after the grace');
    assert.equal(turnHeldBy(hex[2]!, 550, slotMs, keys), undefined, 'before its slot');
    assert.equal(turnHeldBy(`ff${hex[0]!.slice(2)}`, 650, slotMs, keys), undefined, 'a stranger never');
  });
});

describe('rival payments', () => {
  const r = (txid: string, requestIds: string[], inputs: string[]) => ({ txid, requestIds, inputs });

  it('are grouped by shared requests, through chains of them', () => {
    const groups = groupRivals([
      r('a', ['R1'], ['u1']),
      r('b', ['R2'], ['u2']),
      r('c', ['R1', 'R3'], ['u3']),
      r('d', ['R3', 'R2'], ['u4']),
      r('e', ['R9'], ['u9']),
    ]);
    assert.deepEqual(groups.map((g) => g.map((x) => x.txid).sort()).sort(), [['a', 'b', 'c', 'd'], ['e']]);
  });

  it("are grouped by shared inputs too: a merge taking an input another rival holds pays that rival's requests", () => {
    // what a 3-of-4 run with a hostile member showed: b pays R1 with a's input, c pays R2 with it;
    // a merge of a and b alone (R1) would take u1 from c and strand R2, and members holding c refuse it
    const groups = groupRivals([r('a', ['R1'], ['u1', 'u2']), r('b', ['R1'], ['u3']), r('c', ['R2'], ['u1'])]);
    assert.deepEqual(
      groups.map((g) => g.map((x) => x.txid).sort()),
      [['a', 'b', 'c']],
    );
    assert.equal(groupRivals([r('a', ['R1'], ['u1']), r('b', ['R2'], ['u2'])]).length, 2);
  });

  it('are all conflicted only by a payment spending an input of each', () => {
    const group = [r('a', ['R1'], ['u1', 'u2']), r('b', ['R1'], ['u3'])];
    assert.equal(conflictsWithAll(new Set(['u2', 'u3']), group), true);
    assert.equal(conflictsWithAll(new Set(['u1', 'u2']), group), false);
  });
});

describe('early signatures', () => {
  it('keeps what comes before the proposal and hands it over once', () => {
    const early = new EarlySignatures();
    early.keep('t1', 'p1', new Uint8Array(64));
    early.keep('t1', 'p2', new Uint8Array(128));
    assert.deepEqual(early.size(), { sets: 2, bytes: 192 });
    assert.deepEqual(
      early.take('t1').map(([peer, sigs]) => [peer, sigs.length]),
      [
        ['p1', 64],
        ['p2', 128],
      ],
    );
    assert.deepEqual(early.take('t1'), []);
    assert.deepEqual(early.size(), { sets: 0, bytes: 0 });
  });

  it("evicts a peer's own oldest sets beyond its bounds, never another peer's", () => {
    let evicted = 0;
    const early = new EarlySignatures(() => evicted++);
    early.keep('honest', 'p1', new Uint8Array(64));
    for (let i = 0; i < EARLY_CAPS.perPeer + 10; i++) early.keep(`junk${i}`, 'p2', new Uint8Array(64));
    assert.equal(evicted, 10);
    assert.equal(early.take('junk0').length, 0, 'the oldest went first');
    assert.equal(early.take('honest').length, 1, "the other peer's set stayed");
    const big = new EarlySignatures();
    for (let i = 0; i < 10; i++) big.keep(`t${i}`, 'p3', new Uint8Array(EARLY_CAPS.bytesPerPeer / 4));
    assert.ok(big.size().bytes <= EARLY_CAPS.bytesPerPeer);
  });
});
