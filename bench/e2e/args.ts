import { fileURLToPath } from 'node:url';
import { parseArgs, type ParseArgsConfig } from 'node:util';

// The benchmarks' command lines: --help answers and exits, a bad number names its option and
// exits 2, and results go to bench/results unless --out says otherwise.

/** Parses `options` (plus --help, answered with `help`) for the benchmark `tool`. */
export function benchArgs(tool: string, help: string, options: NonNullable<ParseArgsConfig['options']>) {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ options: { ...options, help: { type: 'boolean', default: false } } }));
  } catch (err) {
    process.stderr.write(`${tool}: ${(err as Error).message} (--help lists the options)\n`);
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write(`${help}\n`);
    process.exit(0);
  }
  const positive = (text: string, name: string): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) {
      process.stderr.write(`${tool}: ${name} is ${JSON.stringify(text)}; expected a positive integer\n`);
      process.exit(2);
    }
    return n;
  };
  return { values, positive };
}

/** Where results go: --out, or bench/results. */
export function resultsDir(out: unknown): string {
  return typeof out === 'string' ? out : fileURLToPath(new URL('../../../bench/results/', import.meta.url));
}
