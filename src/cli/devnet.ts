import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Command } from 'commander';
import type { PegoutStatus } from '../api/status.js';
import { defaultThreshold } from '../bitcoin/federation.js';
import { requestCounts, startDevnet, type Devnet } from '../devnet/federation.js';
import { sendPegouts } from '../devnet/requests.js';
import { EvmRpc } from '../evm/rpc.js';
import { integerOption } from './output.js';

// `pegout devnet`: the README's main command. Everything runs on loopback; without Bitcoin
// Core the federation is funded by outputs the devnet declares, which exist on no chain, and
// it stops at fully signed, verified payments.

function step(text: string): void {
  process.stdout.write(`• ${text}\n`);
}

const PEGOUT_SATS = 1_500_000n;

export function registerDevnet(program: Command): void {
  program
    .command('devnet')
    .description('run a local federation: anvil with the bridge, n member processes, k peg-out requests, each followed to a finalized payment')
    .option('--members <n>', 'federation members (separate processes)', '3')
    .option('--threshold <t>', 'signatures needed, more than n/2 (default: floor(2n/3)+1)')
    .option('--requests <k>', 'peg-out requests to send', '10')
    .option('--dir <path>', 'where keys, configs, stores and logs go (default: a new temporary directory)')
    .option('--exit', 'stop everything once every request is in a finalized payment, instead of running until Ctrl-C')
    .addHelpText('after', '\nBitcoin Core: not used by this devnet yet. Funding comes from federation outputs the devnet\ndeclares (labelled everywhere: they exist on no chain); payments are signed by t members and\nverified by every member, and are not broadcast.')
    .action(async (opts: { members: string; threshold?: string; requests: string; dir?: string; exit?: boolean }) => {
      const n = integerOption(opts.members, '--members', 1, 50);
      const threshold = opts.threshold === undefined ? defaultThreshold(n) : integerOption(opts.threshold, '--threshold', Math.floor(n / 2) + 1, n);
      const k = integerOption(opts.requests, '--requests', 1, 100_000);
      const dir = opts.dir ?? (await mkdtemp(join(tmpdir(), 'pegout-devnet-')));
      const funding = { count: Math.max(8, Math.ceil(k / 4)), sats: 10_000_000 };

      let devnet: Devnet | undefined;
      let stopping = false;
      const stop = async (code: number): Promise<never> => {
        if (!stopping) {
          stopping = true;
          step('stopping members and anvil');
          await devnet?.stop();
          step(`stopped; keys, configs, stores and logs stay in ${dir}`);
        }
        process.exit(code);
      };
      process.once('SIGINT', () => void stop(130));
      process.once('SIGTERM', () => void stop(143));

      if (process.env.BITCOIND) step(`BITCOIND=${process.env.BITCOIND} is set, but this devnet does not drive Bitcoin Core yet: running without it`);
      step(`starting anvil, the bridge and ${n} members in ${dir}`);
      devnet = await startDevnet({ dir, members: n, threshold, funding });
      step(`anvil ${devnet.anvil.url}, bridge installed`);
      step(`federation ${threshold}-of-${n}: ${devnet.federation.address}`);
      step(`descriptor: ${devnet.federation.descriptor}`);
      step(`${funding.count} federation outputs of ${funding.sats} sats DECLARED by the devnet: they exist on no chain; nothing can be broadcast`);
      for (const m of devnet.members) step(`member ${m.index + 1} ${m.key.slice(0, 16)}…  API ${m.apiUrl}  log ${m.logFile}`);

      const sent = await sendPegouts(new EvmRpc(devnet.anvil.url), k, PEGOUT_SATS);
      step(`${k} peg-out requests of ${PEGOUT_SATS} sats sent to the bridge (blocks ${sent.fromBlock}–${sent.toBlock})`);

      let last = '';
      for (;;) {
        const counts = await Promise.all(devnet.members.map((m) => requestCounts(m).catch(() => ({}) as Record<string, number>)));
        const line = counts.map((c, i) => `m${i + 1}: ${c.signed ?? 0}/${k} signed`).join('  ');
        if (line !== last) step(line);
        last = line;
        if (counts.every((c) => (c.signed ?? 0) === k)) break;
        await sleep(500);
      }

      const byTx = new Map<string, string[]>();
      for (const id of sent.ids) {
        const status = (await (await fetch(`${devnet.members[0]!.apiUrl}/pegouts/${encodeURIComponent(id)}`)).json()) as PegoutStatus;
        for (const p of status.payments.filter((x) => x.finalized)) byTx.set(p.txid, [...(byTx.get(p.txid) ?? []), id]);
      }
      for (const [txid, ids] of byTx) step(`payment ${txid}: ${ids.length} request(s), ${threshold} signatures on every input, verified by every member`);
      step(`every request is in exactly one finalized payment (${byTx.size} payment(s)); NOT broadcast: no Bitcoin Core in this devnet`);
      step(`try: pegout status ${sent.ids[0]} --api ${devnet.members[0]!.apiUrl}`);
      if (opts.exit) await stop(0);
      step('devnet running; Ctrl-C stops everything it started');
      await new Promise(() => undefined);
    });
}
