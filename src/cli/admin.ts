import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { adminPaths, callAdmin, type AdminPaths } from '../api/admin.js';
import { CliError, printResult } from './output.js';

// The operator's commands on its own member, through the member's admin socket: holds, pause,
// resume. They need the member's config only to find the socket and the token file.

interface AdminOptions {
  config: string;
  json?: boolean;
}

/** The admin socket and token file of the member whose config is `file` (storeDir and admin.*). */
async function pathsFromConfig(file: string): Promise<AdminPaths> {
  let json: { storeDir?: unknown; admin?: { socket?: unknown; tokenFile?: unknown } };
  try {
    json = JSON.parse(await readFile(file, 'utf8')) as typeof json;
  } catch (err) {
    throw new CliError(`--config ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const storeDir = process.env.PEGOUT_STORE_DIR ?? json.storeDir;
  if (typeof storeDir !== 'string') throw new CliError(`--config ${file}: storeDir is not a string`);
  const text = (v: unknown) => (typeof v === 'string' ? v : null);
  return adminPaths(storeDir, { socket: text(json.admin?.socket), tokenFile: text(json.admin?.tokenFile) });
}

function withAdmin(command: Command): Command {
  return command
    .requiredOption('--config <file>', "the member's config file: its admin socket and token file are found from it")
    .option('--json', 'print JSON');
}

async function run(opts: AdminOptions, method: 'GET' | 'POST', route: string, body?: Record<string, unknown>) {
  const result = await callAdmin(await pathsFromConfig(opts.config), method, route, body);
  printResult(Array.isArray(result) ? { items: result } : (result as Record<string, unknown>), Boolean(opts.json));
}

export function registerAdmin(program: Command): void {
  const hold = program
    .command('hold')
    .description(
      'requests over the per-request limit (limits.maxRequestSats): paid only once t operators released them',
    );
  withAdmin(hold.command('list').description('held requests, with which members released each')).action(
    (opts: AdminOptions) => run(opts, 'GET', '/holds'),
  );
  const actions = {
    release: "release a held request on this operator's member (it counts once t members did)",
    reject: 'refuse a held request: this member will never sign a payment of it',
  };
  for (const [action, description] of Object.entries(actions)) {
    withAdmin(
      hold.command(action).description(description).argument('<id>', 'request id, <EVM tx hash>:<ordinal>'),
    ).action((id: string, opts: AdminOptions) => run(opts, 'POST', `/holds/${encodeURIComponent(id)}/${action}`));
  }
  withAdmin(
    program
      .command('pause')
      .description('stop this member signing anything (it keeps ingesting and reporting) until `pegout resume`')
      .requiredOption('--reason <text>', 'why, for the log and /health'),
  ).action((opts: AdminOptions & { reason: string }) => run(opts, 'POST', '/pause', { reason: opts.reason }));
  withAdmin(program.command('resume').description('let a paused member sign again')).action((opts: AdminOptions) =>
    run(opts, 'POST', '/resume'),
  );
}
