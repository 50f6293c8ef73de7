import type { Command } from 'commander';
import { AuditError } from '../wallet/audit.js';
import type { ReserveReport } from '../wallet/reserves.js';
import { printResult } from './output.js';
import { readMemberApi } from './status.js';

// `pegout reserves`: a member's reserve audit (GET /reserves) as lines an operator reads, or JSON;
// exit 1 with the fault's code when the audit failed (as `pegout audit` does for a payment).

/** The report as the API sends it: amounts as decimal strings. */
type Json<T> = T extends bigint
  ? string
  : T extends readonly (infer U)[]
    ? Json<U>[]
    : T extends object
      ? { [K in keyof T]: Json<T[K]> }
      : T;
export type ReserveReportJson = Json<ReserveReport>;

const btc = (sats: string): string => {
  const n = BigInt(sats);
  const abs = n < 0n ? -n : n;
  return `${sats} sats (${n < 0n ? '-' : ''}${abs / 100_000_000n}.${(abs % 100_000_000n).toString().padStart(8, '0')} BTC)`;
};

function verdictLine(r: ReserveReportJson): string {
  const at = r.member ? ` at block ${r.member.height}` : '';
  switch (r.verdict) {
    case 'ok':
      return `ok: Bitcoin Core holds exactly this member's outputs${at}, and they cover what is owed`;
    case 'faulty':
      return `FAULTY${at}: ${r.faults.map((f) => f.kind).join(', ')} (the member pauses itself; docs/alarms.md)`;
    case 'not_compared':
      return `not judged this time: ${r.core.compared ? '' : r.core.reason}`;
    default:
      return 'unaudited: no Bitcoin Core (declared funding exists on no chain); the books below are not judged';
  }
}

function coreLine(r: ReserveReportJson): string {
  const c = r.core;
  if (!c.compared) return c.reason;
  const d = c.differences;
  const same = d.onlyInCore + d.onlyHere + d.otherValue === 0;
  const differs = `${d.onlyInCore} outputs only in Core, ${d.onlyHere} only here, ${d.otherValue} with another value`;
  return `${btc(c.sats)} in ${c.outputs} outputs at block ${c.height}: ${same ? 'the same outputs as here' : differs}`;
}

/** The report as aligned lines. */
export function reservesAsText(r: ReserveReportJson): Record<string, string> {
  const owed = Object.entries(r.liabilities.byStatus)
    .map(([status, x]) => `${status} ${x!.requests}: ${x!.sats}`)
    .join(', ');
  const lines: Record<string, string> = {
    verdict: verdictLine(r),
    member: r.member ? `Bitcoin block ${r.member.height} (${r.member.hash})` : 'no Bitcoin block applied',
    assets: `${btc(r.assets.sats)} in ${r.assets.outputs} confirmed outputs (unspent, or reserved by a payment)`,
    liabilities: `${btc(r.liabilities.sats)} for ${r.liabilities.requests} requests${owed ? ` (${owed})` : ''}`,
    settling: `${btc(r.settling.sats)} for ${r.settling.requests} requests paid in a block, not yet at the paid depth`,
    surplus: `${btc(r.surplus)} (assets − liabilities)`,
    'peg-ins − paid': `${r.ledger.pegIns} − ${r.ledger.paid} = ${btc(r.ledger.pegInsMinusPaid)}; minus assets: ${r.ledger.unexplained} unexplained (change under the dust limit, or money that left otherwise)`,
    'bitcoin core': coreLine(r),
  };
  if (r.unnamed.payments > 0)
    lines.unnamed = `${btc(r.unnamed.sats)} taken by ${r.unnamed.payments} payments found on the chain whose requests are not named yet (counted against the liabilities until the paid depth)`;
  if (r.unconfirmed.outputs > 0)
    lines.unconfirmed = `${btc(r.unconfirmed.sats)} in ${r.unconfirmed.outputs} reserved outputs whose block left the chain`;
  for (const [i, f] of r.faults.entries()) lines[`fault ${i + 1}`] = `${f.kind}: ${f.message}`;
  if (r.core.compared)
    for (const [i, d] of r.core.listed.entries())
      lines[`difference ${i + 1}`] =
        `${d.txid}:${d.vout}: here ${d.ours ?? 'absent'}, Bitcoin Core ${d.core ?? 'absent'}`;
  lines.at = r.at;
  return lines;
}

export function registerReserves(program: Command): void {
  program
    .command('reserves')
    .description(
      "a member's reserve audit from its HTTP API: federation outputs held against requests owed, peg-ins − paid, " +
        "and Bitcoin Core's view of the same outputs (exit 1 when the audit failed)",
    )
    .requiredOption('--api <url>', "a member's HTTP API, e.g. http://127.0.0.1:8080")
    .option('--json', 'print JSON')
    .action(async (opts: { api: string; json?: boolean }) => {
      const report = (await readMemberApi(opts.api, '/reserves', 'the reserve audit')) as unknown as ReserveReportJson;
      printResult(opts.json ? report : reservesAsText(report), Boolean(opts.json));
      const [first, ...more] = report.faults;
      if (first)
        throw new AuditError(first.kind, [first, ...more].map((f) => f.message).join('; '), {
          height: report.member?.height,
        });
    });
}
