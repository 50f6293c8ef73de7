import type { ChainSpend, RequestStatus } from '../storage/records.js';
import { outpointText, type Outpoint } from './utxos.js';

// The reserve audit (issue 13): what the federation holds against what it owes, and whether this
// member's view of its coins is Bitcoin Core's. Pure: src/node/reserves.ts reads the books from the
// store and Core's UTXO set, and raises the alarms (docs/alarms.md).

/** A federation output this member holds unspent or reserved. */
export interface HeldOutput extends Outpoint {
  readonly value: bigint;
  /** null: its block left the best chain while a payment reserved it (not counted as an asset). */
  readonly height: number | null;
}

/** A request in an OWED status (evm/request-store.ts). */
export interface OwedRequest {
  readonly id: string;
  readonly status: RequestStatus;
  readonly sats: bigint;
  /**
   * A payment of it is already applied to this member's coins (confirmed in a block it applied, or
   * settled locally without Bitcoin Core): its inputs left the assets, so it is no longer a liability,
   * only waiting for the paid depth.
   */
  readonly settled: boolean;
}

/** This member's own records, read at one instant (src/node/reserves.ts readBooks). */
export interface ReserveBooks {
  /** The last Bitcoin block this member applied; null before the first one (or without Bitcoin Core). */
  readonly cursor: { readonly height: number; readonly hash: string } | null;
  readonly outputs: readonly HeldOutput[];
  readonly owed: readonly OwedRequest[];
  /** Σ confirmed federation outputs created by transactions that are no federation payment, ever. */
  readonly pegIns: bigint;
  /** Σ sats of requests in status 'paid'. */
  readonly paid: bigint;
  /** Recent payments found on the chain whose requests this member cannot name yet (ReserveReport.unnamed). */
  readonly unnamed: Unnamed;
}

/**
 * How long after this member found a payment whose requests it cannot name it waits for them: a
 * member that was down past the paid depth finds its peers' payments deep already.
 */
export const NAMING_MS = 10 * 60_000;

/**
 * Whether a payment whose requests this member cannot name is still waiting for them: it has fewer
 * than `paidConfirmations` confirmations at `tip`, or this member found it (applied its block) less
 * than NAMING_MS before `nowMs`. Meanwhile the reserve audit counts what it took and the member asks
 * its peers for it (node/settlement.ts); past both, a spend that only looks like a payment is short.
 */
export function unnamedWithin(
  spend: Pick<ChainSpend, 'height' | 'found'>,
  tip: number,
  paidConfirmations: number,
  nowMs: number,
): boolean {
  const found = spend.found === undefined ? -Infinity : Date.parse(spend.found);
  return tip - spend.height + 1 < paidConfirmations || nowMs - found < NAMING_MS;
}

/** Payments, and the sats they took from the federation's outputs. */
export interface Unnamed {
  readonly sats: bigint;
  readonly payments: number;
}

/** Bitcoin Core's UTXO set for the federation script at its tip, or why there is none this time. */
export type CoreView =
  | {
      readonly height: number;
      readonly hash: string | undefined;
      readonly outputs: readonly HeldOutput[];
      /**
       * On the new side of a rotation: what Core holds at the old federation's address, on its way
       * here by the handoff (node/handoff.ts); it covers this member's requests until it arrives.
       */
      readonly handingOver?: bigint;
    }
  | { readonly unavailable: string };

export type ReserveFaultKind = 'reserves_short' | 'reserves_mismatch';

export interface ReserveFault {
  readonly kind: ReserveFaultKind;
  readonly message: string;
}

export interface OutputDifference extends Outpoint {
  /** undefined: the side does not have the output. */
  readonly ours: bigint | undefined;
  readonly core: bigint | undefined;
}

export type CoreComparison =
  | {
      readonly compared: true;
      readonly height: number;
      readonly hash: string | undefined;
      readonly sats: bigint;
      readonly outputs: number;
      /** Outputs only Core has, only this member has, and both have with other values. */
      readonly differences: { readonly onlyInCore: number; readonly onlyHere: number; readonly otherValue: number };
      /** The first MAX_LISTED of them, in outpoint order. */
      readonly listed: readonly OutputDifference[];
      /** As CoreView's: sats at the old federation's address during a rotation, counted towards the liabilities. */
      readonly handingOver?: bigint;
    }
  | { readonly compared: false; readonly reason: string };

/**
 * ok / faulty: compared with Core at the member's own block; not_compared: Core was at another
 * block or did not answer (judged at the next block); unaudited: no Bitcoin Core at all.
 */
export type ReserveVerdict = 'ok' | 'faulty' | 'not_compared' | 'unaudited';

export interface ReserveReport {
  readonly at: string;
  readonly member: { readonly height: number; readonly hash: string } | null;
  /** Confirmed federation outputs this member holds, unspent or reserved for a payment not yet confirmed. */
  readonly assets: { readonly sats: bigint; readonly outputs: number };
  /**
   * Not counted, nor compared: reserved outputs whose block left the best chain (assets again once
   * mined again), and outputs recovered from Core in a block this member has not applied yet.
   */
  readonly unconfirmed: { readonly sats: bigint; readonly outputs: number };
  readonly liabilities: {
    readonly sats: bigint;
    readonly requests: number;
    readonly byStatus: Readonly<Partial<Record<RequestStatus, { requests: number; sats: bigint }>>>;
  };
  /** Requests whose payment is applied but not yet at the paid depth: counted as paid. */
  readonly settling: { readonly sats: bigint; readonly requests: number };
  /**
   * Payments found on the chain that commit to requests this member cannot name (node/settlement.ts),
   * while it waits for a peer to send which requests they paid (unnamedWithin): what they took from
   * the federation's outputs stands against the liabilities. Past the wait they count no more, so a
   * spend that only looks like a payment is short then.
   */
  readonly unnamed: Unnamed;
  /** assets − liabilities. */
  readonly surplus: bigint;
  /**
   * Peg-ins minus paid (paid: requests 'paid' and settling); `unexplained` = that − assets: what left
   * the federation that no paid request accounts for (change remainders under the dust limit, fees
   * of payments found on the chain, a spend no payment explains). Informational.
   */
  readonly ledger: {
    readonly pegIns: bigint;
    readonly paid: bigint;
    readonly pegInsMinusPaid: bigint;
    readonly unexplained: bigint;
  };
  readonly core: CoreComparison;
  readonly verdict: ReserveVerdict;
  readonly faults: readonly ReserveFault[];
}

/** Differences listed in a report; the count covers them all. */
export const MAX_LISTED = 20;

const sum = (values: Iterable<bigint>): bigint => {
  let total = 0n;
  for (const v of values) total += v;
  return total;
};

/** Where the two views differ, outpoint by outpoint, in outpoint order. */
export function outputDifferences(ours: readonly HeldOutput[], core: readonly HeldOutput[]): OutputDifference[] {
  const mine = new Map(ours.map((o) => [outpointText(o), o]));
  const theirs = new Map(core.map((o) => [outpointText(o), o]));
  const out: OutputDifference[] = [];
  for (const name of [...new Set([...mine.keys(), ...theirs.keys()])].sort()) {
    const a = mine.get(name);
    const b = theirs.get(name);
    if (a?.value === b?.value) continue;
    const { txid, vout } = (a ?? b)!;
    out.push({ txid, vout, ours: a?.value, core: b?.value });
  }
  return out;
}

function compareWithCore(
  cursor: ReserveBooks['cursor'],
  assets: readonly HeldOutput[],
  core: CoreView | null,
): CoreComparison {
  if (core === null)
    return {
      compared: false,
      reason:
        'no Bitcoin Core configured: the funding is declared and exists on no chain, so there is nothing to compare and no alarm',
    };
  if ('unavailable' in core) return { compared: false, reason: core.unavailable };
  if (cursor === null) return { compared: false, reason: 'this member has applied no Bitcoin block yet' };
  const short = (h: string | undefined) => (h === undefined ? '' : ` (${h.slice(0, 16)}…)`);
  if (core.height !== cursor.height || (core.hash !== undefined && core.hash !== cursor.hash))
    return {
      compared: false,
      reason: `not compared: Core at ${core.height}${short(core.hash)}, member at ${cursor.height}${short(cursor.hash)}`,
    };
  const all = outputDifferences(assets, core.outputs);
  const onlyInCore = all.filter((d) => d.ours === undefined).length;
  const onlyHere = all.filter((d) => d.core === undefined).length;
  return {
    compared: true,
    height: core.height,
    hash: core.hash,
    sats: sum(core.outputs.map((o) => o.value)),
    outputs: core.outputs.length,
    differences: { onlyInCore, onlyHere, otherValue: all.length - onlyInCore - onlyHere },
    listed: all.slice(0, MAX_LISTED),
    ...(core.handingOver !== undefined ? { handingOver: core.handingOver } : {}),
  };
}

function liabilitiesOf(owed: readonly OwedRequest[]): Pick<ReserveReport, 'liabilities' | 'settling'> {
  const byStatus: Partial<Record<RequestStatus, { requests: number; sats: bigint }>> = {};
  let sats = 0n;
  let requests = 0;
  const settling = { sats: 0n, requests: 0 };
  for (const r of owed) {
    if (r.settled) {
      settling.sats += r.sats;
      settling.requests++;
      continue;
    }
    const entry = (byStatus[r.status] ??= { requests: 0, sats: 0n });
    entry.requests++;
    entry.sats += r.sats;
    sats += r.sats;
    requests++;
  }
  return { liabilities: { sats, requests, byStatus }, settling };
}

function faultsOf(report: Omit<ReserveReport, 'verdict' | 'faults'>): ReserveFault[] {
  const { core, assets, liabilities, member, unnamed } = report;
  if (!core.compared) return [];
  const faults: ReserveFault[] = [];
  const handingOver = core.handingOver ?? 0n;
  if (assets.sats + handingOver + unnamed.sats < liabilities.sats)
    faults.push({
      kind: 'reserves_short',
      message:
        `assets ${assets.sats} sats${handingOver > 0n ? ` (and ${handingOver} at the old federation's address, being handed over)` : ''}` +
        `${unnamed.sats > 0n ? ` (and ${unnamed.sats} paid by ${unnamed.payments} payments whose requests are not named yet)` : ''} < ` +
        `liabilities ${liabilities.sats} sats (${liabilities.requests} requests): ` +
        `short by ${liabilities.sats - assets.sats - handingOver - unnamed.sats} sats at block ${member!.height}`,
    });
  const { onlyInCore, onlyHere, otherValue } = core.differences;
  if (onlyInCore + onlyHere + otherValue > 0)
    faults.push({
      kind: 'reserves_mismatch',
      message:
        `at block ${core.height} this member holds ${assets.sats} sats in ${assets.outputs} outputs, Bitcoin Core ` +
        `${core.sats} sats in ${core.outputs}: ${onlyInCore} outputs only in Core, ${onlyHere} only here, ` +
        `${otherValue} with another value`,
    });
  return faults;
}

/**
 * The reserve report: assets (confirmed outputs held), liabilities (OWED requests whose payment is
 * not applied yet), the ledger (peg-ins − paid), and Core's view compared outpoint by outpoint, but
 * only when Core's tip is the member's own block: the books are judged at one block or not at all.
 * Faults (shortfall, mismatch) are judged only then, so a member still catching up is never faulted.
 */
export function reserveReport(books: ReserveBooks, core: CoreView | null, at: string): ReserveReport {
  // an output recovered from Core (chain/observer.ts recoverUtxo) may be in a block this member has not applied yet
  const counted = (o: HeldOutput) => o.height !== null && (books.cursor === null || o.height <= books.cursor.height);
  const confirmed = books.outputs.filter(counted);
  const unconfirmed = books.outputs.filter((o) => !counted(o));
  const assets = { sats: sum(confirmed.map((o) => o.value)), outputs: confirmed.length };
  const { liabilities, settling } = liabilitiesOf(books.owed);
  const paid = books.paid + settling.sats;
  const partial = {
    at,
    member: books.cursor,
    assets,
    unconfirmed: { sats: sum(unconfirmed.map((o) => o.value)), outputs: unconfirmed.length },
    liabilities,
    settling,
    unnamed: books.unnamed,
    surplus: assets.sats - liabilities.sats,
    ledger: {
      pegIns: books.pegIns,
      paid,
      pegInsMinusPaid: books.pegIns - paid,
      unexplained: books.pegIns - paid - assets.sats,
    },
    core: compareWithCore(books.cursor, confirmed, core),
  };
  const faults = faultsOf(partial);
  const verdict: ReserveVerdict =
    core === null ? 'unaudited' : !partial.core.compared ? 'not_compared' : faults.length > 0 ? 'faulty' : 'ok';
  return { ...partial, verdict, faults };
}
