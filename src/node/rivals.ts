// Rival payments (SPEC §3): payments of the same requests from different inputs, each signed by
// some members, none able to reach t (a member signs only one of two payments of a request that
// do not conflict). One payment that spends an input of each conflicts with all of them, so every
// member may sign it. Pure: which rivals belong together, and whether a payment covers a group.

export interface Rival {
  readonly txid: string;
  readonly requestIds: readonly string[];
  /** Outpoints it spends, `txid:vout`. */
  readonly inputs: readonly string[];
}

/**
 * Rivals linked by a shared request or a shared input, directly or through others: each group
 * needs one merge. Inputs link too because a merge spends an input of each rival, and one that
 * another payment holds is taken only by a payment of all its requests (SPEC §3, invariant 5).
 */
export function groupRivals<R extends Rival>(rivals: readonly R[]): R[][] {
  const groupOf = new Map<string, number>();
  const groups: R[][] = [];
  // requests and outpoints in one map: `r/` and `i/` keep their names apart
  const links = (r: Rival): string[] => [...r.requestIds.map((id) => `r/${id}`), ...r.inputs.map((o) => `i/${o}`)];
  for (const rival of rivals) {
    const joined = [
      ...new Set(
        links(rival)
          .map((l) => groupOf.get(l))
          .filter((g) => g !== undefined),
      ),
    ];
    const group = joined.length > 0 ? joined[0]! : groups.push([]) - 1;
    for (const other of joined.slice(1)) groups[group]!.push(...groups[other]!.splice(0));
    groups[group]!.push(rival);
    for (const r of groups[group]!) for (const l of links(r)) groupOf.set(l, group);
  }
  return groups.filter((g) => g.length > 0);
}

/** Whether a payment spending `spends` conflicts with every rival of `group`. */
export function conflictsWithAll(spends: ReadonlySet<string>, group: readonly Rival[]): boolean {
  return group.every((r) => r.inputs.some((o) => spends.has(o)));
}
