import { writeFile } from 'node:fs/promises';
import { Command, CommanderError } from 'commander';
import { isPegoutError, PegoutError } from '../errors.js';

/** A usage fault the CLI itself finds (a bad option value, a missing file). */
export class CliError extends PegoutError<'usage'> {
  readonly domain = 'cli';
  constructor(message: string) {
    super('usage', message);
  }
}

/**
 * Runs the program so that every failure ends as one line on stderr and a non-zero exit:
 * operators script these commands, so a stack trace is noise and a zero exit after a
 * failure is a lie.
 */
export async function runCli(program: Command, argv: string[]): Promise<void> {
  program.exitOverride();
  try {
    await program.parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // commander already printed its message (or the help text, with exit code 0)
      process.exitCode = err.exitCode;
      return;
    }
    process.stderr.write(`pegout: ${describeError(err)}\n`);
    process.exitCode = isPegoutError(err) ? 1 : 70;
  }
}

export function describeError(err: unknown): string {
  if (isPegoutError(err)) return `${err.code}: ${err.message}`;
  if (err instanceof Error) return err.message;
  return String(err);
}

/** Prints a result either as JSON (`--json`) or as aligned `key: value` lines. */
export function printResult(result: Record<string, unknown>, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    return;
  }
  const width = Math.max(...Object.keys(result).map((k) => k.length));
  for (const [key, value] of Object.entries(result)) {
    const text = typeof value === 'string' ? value : JSON.stringify(value);
    process.stdout.write(`${key.padEnd(width)}  ${text}\n`);
  }
}

/** Parses an integer option, naming the option and the value when it is not one. */
export function integerOption(value: string, option: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new CliError(
      `${option} must be an integer from ${min}${max === Number.MAX_SAFE_INTEGER ? '' : ` to ${max}`}, got ${JSON.stringify(value)}`,
    );
  }
  return n;
}

/**
 * Writes `value` as JSON to the new file `path` given with --out. A file another command or
 * member reads (a federation, a plan) is never replaced: an old one may be what others agreed to.
 */
export async function writeOutFile(path: string, value: unknown, what: string): Promise<void> {
  try {
    await writeFile(path, `${JSON.stringify(value, null, 2)}\n`, { flag: 'wx' });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(
      `--out ${path}: ${code === 'EEXIST' ? `already exists; ${what} is never overwritten` : (code ?? (err as Error).message)}`,
    );
  }
}
