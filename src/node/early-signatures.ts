/** Bounds on signature sets that arrive before their proposal (SPEC §3: every cache a peer can fill is bounded). */
export const EARLY_CAPS = {
  /**
   * Sets per peer: an honest peer is at most a few payments ahead. Beyond either bound the peer's
   * oldest set is evicted, so a peer that sends sets for txids that never come only ever evicts
   * its own.
   */
  perPeer: 64,
  /** Bytes per peer: 64 sets of a 256-input payment. */
  bytesPerPeer: 64 * 64 * 256,
} as const;

/**
 * Signature sets for proposals this member has not signed yet (they may arrive first), kept per
 * peer in arrival order within EARLY_CAPS, and handed over when the proposal is signed.
 */
export class EarlySignatures {
  private readonly byTxid = new Map<string, Map<string, Uint8Array>>();
  /** Per peer, the txids of its sets, oldest first, and their bytes. */
  private readonly byPeer = new Map<string, { txids: Set<string>; bytes: number }>();

  /** `onEvict` is told each time a peer's oldest set makes room for a new one. */
  constructor(private readonly onEvict: () => void = () => undefined) {}

  keep(txid: string, peer: string, signatures: Uint8Array): void {
    const mine = this.byPeer.get(peer) ?? this.byPeer.set(peer, { txids: new Set(), bytes: 0 }).get(peer)!;
    if (mine.txids.has(txid)) return;
    while (
      mine.txids.size >= EARLY_CAPS.perPeer ||
      (mine.bytes > 0 && mine.bytes + signatures.length > EARLY_CAPS.bytesPerPeer)
    ) {
      this.drop(mine.txids.values().next().value as string, peer);
      this.onEvict();
    }
    // a copy: the frame's buffer may be a view into a much larger receive buffer
    (this.byTxid.get(txid) ?? this.byTxid.set(txid, new Map()).get(txid)!).set(peer, Uint8Array.from(signatures));
    mine.txids.add(txid);
    mine.bytes += signatures.length;
  }

  /** Every set kept for `txid`, by peer, forgotten here. */
  take(txid: string): [string, Uint8Array][] {
    const sets = [...(this.byTxid.get(txid) ?? [])];
    this.drop(txid);
    return sets;
  }

  /** How many sets are held for `txid`, leaving out `except`'s. */
  count(txid: string, except: string): number {
    const sets = this.byTxid.get(txid);
    return sets ? sets.size - (sets.has(except) ? 1 : 0) : 0;
  }

  /** How many sets and bytes are held, all peers together. */
  size(): { sets: number; bytes: number } {
    let bytes = 0;
    for (const peer of this.byPeer.values()) bytes += peer.bytes;
    return { sets: [...this.byTxid.values()].reduce((a, m) => a + m.size, 0), bytes };
  }

  /** Forgets the sets of `txid`, of one peer or of all. */
  private drop(txid: string, only?: string): void {
    const sets = this.byTxid.get(txid);
    for (const [peer, sigs] of sets ?? []) {
      if (only !== undefined && peer !== only) continue;
      const mine = this.byPeer.get(peer);
      if (mine) {
        mine.txids.delete(txid);
        mine.bytes -= sigs.length;
        if (mine.txids.size === 0) this.byPeer.delete(peer);
      }
      sets!.delete(peer);
    }
    if (sets?.size === 0) this.byTxid.delete(txid);
  }
}
