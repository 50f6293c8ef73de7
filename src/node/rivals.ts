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
  // union-find over the rivals: each link joins a rival to the first that had it, so grouping costs
  // about one map lookup a link, however the groups chain (re-labelling every member of a group at
  // each join cost rivals² × links: seconds for the rivals one peer can make this member keep)
  const parent = rivals.map((_, i) => i);
  const root = (i: number): number => {
    while (parent[i] !== i) i = parent[i] = parent[parent[i]!]!;
    return i;
  };
  const first = new Map<string, number>();
  for (const [i, rival] of rivals.entries()) {
    // requests and outpoints in one map: `r/` and `i/` keep their names apart
    for (const link of [...rival.requestIds.map((id) => `r/${id}`), ...rival.inputs.map((o) => `i/${o}`)]) {
      const j = first.get(link);
      if (j === undefined) {
        first.set(link, i);
        continue;
      }
      const [a, b] = [root(i), root(j)];
      if (a !== b) parent[Math.max(a, b)] = Math.min(a, b);
    }
  }
  const groups = new Map<number, R[]>();
  for (const [i, rival] of rivals.entries()) {
    const group = groups.get(root(i));
    if (group) group.push(rival);
    else groups.set(root(i), [rival]);
  }
  return [...groups.values()];
}

/** Whether a payment spending `spends` conflicts with every rival of `group`. */
export function conflictsWithAll(spends: ReadonlySet<string>, group: readonly Rival[]): boolean {
  return group.every((r) => r.inputs.some((o) => spends.has(o)));
}
