import type { Command } from 'commander';
import { CliError, printResult } from './output.js';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description("show a peg-out request's lifecycle from a member's HTTP API")
    .argument(
      '<id>',
      'request id: <EVM tx hash>:<ordinal among its RequestPegOut logs> (as `pegout request` prints it)',
    )
    .requiredOption('--api <url>', "a member's HTTP API, e.g. http://127.0.0.1:8080")
    .option('--json', 'print JSON')
    .action(async (id: string, opts: { api: string; json?: boolean }) => {
      const body = await readMemberApi(opts.api, `/pegouts/${encodeURIComponent(id)}`, `request ${id}`);
      printResult(body, Boolean(opts.json));
    });
}

/** GET `path` from a member's API (`--api`): the JSON body, or one-line errors naming the API and what is missing. */
export async function readMemberApi(api: string, path: string, what: string): Promise<Record<string, unknown>> {
  let res: Response;
  try {
    res = await fetch(new URL(path, api), { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new CliError(
      `--api ${api}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`,
    );
  }
  const body = (await res.json().catch(() => null)) as Record<string, unknown> | null;
  if (res.status === 404) throw new CliError(`${what} is not known to ${api}`);
  if (!res.ok || !body) throw new CliError(`${api} answered HTTP ${res.status}: ${JSON.stringify(body)}`);
  return body;
}
