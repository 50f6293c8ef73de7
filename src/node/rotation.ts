import { toHex } from '../bitcoin/bytes.js';

// Proposer rotation (SPEC §3 "Rounds", "Only the current slot's proposer can hold the turn").
// Time is cut into slots of slotMs; the proposer of slot s is the s-th key (mod n) in the
// federation's sorted order, so every member computes the same rotation from its clock alone.

/**
 * A proposer's turn lasts its slot plus this many slots of grace (a large batch may take longer
 * to build than a slot); frames about turns from any other member are ignored and counted, so a
 * silent or lying proposer costs the federation at most this long.
 */
export const TURN_GRACE_SLOTS = 1;

export function slotAt(now: number, slotMs: number): number {
  return Math.floor(now / slotMs);
}

/** The x-only key (hex) of slot `slot`'s proposer; `pubkeys` in the federation's sorted order. */
export function proposerOf(slot: number, pubkeys: readonly Uint8Array[]): string {
  return toHex(pubkeys[slot % pubkeys.length]!);
}

/** The slot whose turn `member` holds at `now` (its own, or one within the grace), or undefined. */
export function turnHeldBy(
  member: string,
  now: number,
  slotMs: number,
  pubkeys: readonly Uint8Array[],
): number | undefined {
  const slot = slotAt(now, slotMs);
  for (let s = slot; s >= slot - TURN_GRACE_SLOTS; s--) if (proposerOf(s, pubkeys) === member) return s;
  return undefined;
}
