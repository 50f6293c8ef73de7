import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { PegoutStatus } from '../api/status.js';
import { defaultThreshold } from '../bitcoin/federation.js';
import { findBitcoind, type Regtest } from '../devnet/bitcoind.js';
import { requestCounts, startDevnet, type Devnet } from '../devnet/federation.js';
import { sendPegouts } from '../devnet/requests.js';
import { EvmRpc } from '../evm/rpc.js';
import { integerOption } from './output.js';

// `pegout devnet`: the README's main command. Everything runs on loopback. With a bitcoind
// binary the federation is funded by peg-ins on regtest and its payments are broadcast, mined
// and followed until the destinations are credited; without one it is funded by outputs the
// devnet declares, which exist on no chain, and it stops at fully signed, verified payments.

function step(text: string): void {
  process.stdout.write(`• ${text}\n`);
}

const PEGOUT_SATS = 1_500_000n;

export function registerDevnet(program: Command): void {
  program
    .command('devnet')
    .description(
      'run a local federation: anvil with the bridge, n member processes, k peg-out requests, each followed to a finalized payment',
    )
    .option('--members <n>', 'federation members (separate processes)', '3')
    .option('--threshold <t>', 'signatures needed, more than n/2 (default: floor(2n/3)+1)')
    .option('--requests <k>', 'peg-out requests to send', '10')
    .option('--dir <path>', 'where keys, configs, stores and logs go (default: a new temporary directory)')
    .option('--exit', 'stop everything once every request is in a finalized payment, instead of running until Ctrl-C')
    .addHelpText(
      'after',
      '\nBitcoin Core: with a bitcoind binary (env BITCOIND, or bitcoind on PATH) the devnet runs a regtest\nnode too: peg-ins fund the federation, members broadcast their payments, the devnet mines a block\na second and shows each destination credited. Without one, funding comes from federation outputs\nthe devnet declares (labelled everywhere: they exist on no chain); payments are signed by t\nmembers and verified by every member, and are not broadcast.',
    )
    .action(runDevnet);
}

interface DevnetOptions {
  members: string;
  threshold?: string;
  requests: string;
  dir?: string;
  exit?: boolean;
}

async function runDevnet(opts: DevnetOptions): Promise<void> {
  const n = integerOption(opts.members, '--members', 1, 50);
  const threshold =
    opts.threshold === undefined
      ? defaultThreshold(n)
      : integerOption(opts.threshold, '--threshold', Math.floor(n / 2) + 1, n);
  const k = integerOption(opts.requests, '--requests', 1, 100_000);
  const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'pegout-devnet-')));
  const funding = { count: Math.max(8, Math.ceil(k / 4)), sats: 10_000_000 };

  let devnet: Devnet | undefined;
  let stopping = false;
  const stop = async (code: number): Promise<never> => {
    if (!stopping) {
      stopping = true;
      step(`stopping members, anvil${devnet?.regtest ? ' and bitcoind' : ''}`);
      await devnet?.stop();
      step(`stopped; keys, configs, stores and logs stay in ${dir}`);
    }
    process.exit(code);
  };
  process.once('SIGINT', () => void stop(130));
  process.once('SIGTERM', () => void stop(143));

  const bitcoind = findBitcoind();
  step(
    bitcoind
      ? `bitcoind: ${bitcoind} (regtest)`
      : 'no bitcoind (set BITCOIND or put bitcoind on PATH for regtest): payments will be signed and verified, not broadcast',
  );
  step(`starting anvil, the bridge${bitcoind ? ', bitcoind' : ''} and ${n} members in ${dir}`);
  devnet = await startDevnet({ dir, members: n, threshold, funding, ...(bitcoind ? { bitcoind } : {}) });
  describeDevnet(devnet, threshold, funding);

  const sent = await sendPegouts(new EvmRpc(devnet.anvil.url), k, PEGOUT_SATS);
  step(`${k} peg-out requests of ${PEGOUT_SATS} sats sent to the bridge (blocks ${sent.fromBlock}–${sent.toBlock})`);
  await followRequests(devnet, k);
  await reportPayments(devnet, sent.ids, threshold);
  const api = devnet.members[0]!.apiUrl;
  step(`try: pegout status ${sent.ids[0]} --api ${api}`);
  step(`or open ${api}/#q=${sent.ids[0]!.split(':')[0]} (the users' page) and ${api}/operator`);
  if (opts.exit) await stop(0);
  step('devnet running; Ctrl-C stops everything it started');
  await new Promise(() => undefined);
}

function describeDevnet(devnet: Devnet, threshold: number, funding: { count: number; sats: number }): void {
  step(`anvil ${devnet.anvil.url}, bridge installed`);
  step(`federation ${threshold}-of-${devnet.members.length}: ${devnet.federation.address}`);
  step(`descriptor: ${devnet.federation.descriptor}`);
  step(
    devnet.regtest
      ? `${funding.count} peg-ins of ${funding.sats} sats to the federation, confirmed on regtest (${devnet.regtest.rpcUrl})`
      : `${funding.count} federation outputs of ${funding.sats} sats DECLARED by the devnet: they exist on no chain; nothing can be broadcast`,
  );
  for (const m of devnet.members)
    step(`member ${m.index + 1} ${m.key.slice(0, 16)}…  API ${m.apiUrl}  log ${m.logFile}`);
  const first = devnet.members[0]!.apiUrl;
  step(`status pages (every member serves them): users ${first}/  operators ${first}/operator`);
}

/** Prints each member's progress until every member holds every request done. */
async function followRequests(devnet: Devnet, k: number): Promise<void> {
  const regtest = devnet.regtest;
  // without Bitcoin Core a request ends 'signed'; with it, 'paid' at depth
  const done = regtest ? 'paid' : 'signed';
  let last = '';
  for (;;) {
    const counts = await Promise.all(
      devnet.members.map((m) => requestCounts(m).catch(() => ({}) as Record<string, number>)),
    );
    const detail = (c: Record<string, number>): string =>
      regtest ? ` (${c.signed ?? 0} signed, ${c.broadcast ?? 0} broadcast)` : '';
    const line = counts.map((c, i) => `m${i + 1}: ${c[done] ?? 0}/${k} ${done}${detail(c)}`).join('  ');
    if (line !== last) step(line);
    last = line;
    if (counts.every((c) => (c[done] ?? 0) === k)) return;
    if (regtest) await regtest.mine(1);
    await sleep(regtest ? 1000 : 500);
  }
}

/** Each payment, and with Bitcoin Core its block and every destination credited. */
async function reportPayments(devnet: Devnet, ids: readonly string[], threshold: number): Promise<void> {
  const statuses: PegoutStatus[] = [];
  for (const id of ids) {
    const res = await fetch(`${devnet.members[0]!.apiUrl}/pegouts/${encodeURIComponent(id)}`);
    statuses.push((await res.json()) as PegoutStatus);
  }
  const byTx = new Map<string, string[]>();
  for (const status of statuses) {
    for (const p of status.payments.filter((x) => x.finalized))
      byTx.set(p.txid, [...(byTx.get(p.txid) ?? []), status.id]);
  }
  const regtest = devnet.regtest;
  if (regtest) {
    for (const txid of byTx.keys()) step(await confirmedLine(regtest, txid, threshold));
    for (const status of statuses) step(await creditedLine(regtest, status));
    step(`every request is paid on regtest (${byTx.size} payment(s))`);
    return;
  }
  for (const [txid, paid] of byTx) {
    step(
      `payment ${txid}: ${paid.length} request(s), ${threshold} signatures on every input, verified by every member`,
    );
  }
  step(
    `every request is in a finalized payment (${byTx.size} payment(s)); NOT broadcast: no Bitcoin Core in this devnet`,
  );
}

/** A payment as regtest sees it: confirmations, block, fee-paying size. */
async function confirmedLine(regtest: Regtest, txid: string, threshold: number): Promise<string> {
  const tx = await regtest.rpc.call<{ confirmations?: number; blockhash?: string; vsize: number }>(
    'getrawtransaction',
    [txid, true],
  );
  const where = tx.blockhash
    ? `${tx.confirmations ?? 0} confirmation(s), block ${tx.blockhash.slice(0, 16)}…`
    : 'not in a block';
  return `payment ${txid}: ${threshold} signatures on every input, ${tx.vsize} vB, ${where}`;
}

/** What the chain holds at a request's destination address (scantxoutset reads the UTXO set, no wallet needed). */
async function creditedLine(regtest: Regtest, status: PegoutStatus): Promise<string> {
  const scan = await regtest.rpc.call<{ total_amount: number }>('scantxoutset', [
    'start',
    [`addr(${status.bitcoinAddress})`],
  ]);
  return `${status.bitcoinAddress} credited ${scan.total_amount.toFixed(8)} BTC (request ${status.id}, ${status.sats} sats before its fee share)`;
}
