import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { fromHex } from '../bitcoin/bytes.js';
import { parseFederationFile, type Federation } from '../bitcoin/federation.js';
import { parsePrevouts, parseTx, type Prevout, type Transaction } from '../bitcoin/tx.js';
import { BitcoinRpcClient, type RpcAuth } from '../chain/rpc.js';
import { CliError } from './output.js';

/** Reads a JSON file, naming the option it came from when it is missing or malformed. */
export async function readJsonFile(path: string, option: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new CliError(`${option} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch {
    throw new CliError(`${option} ${path}: not valid JSON`);
  }
}

/** Reads the federation file `path` given with `option`; every fault names both. */
export async function loadFederation(path: string, option: string): Promise<Federation> {
  return parseFederationFile(await readJsonFile(path, option), `${option} ${path}`);
}

export function loadTx(hex: string): Transaction {
  return parseTx(fromHex(hex.trim(), '--tx'));
}

export async function loadPrevouts(path: string, tx: Transaction): Promise<Prevout[]> {
  return parsePrevouts(await readJsonFile(path, '--prevouts'), tx.inputs.length);
}

/** The options every command that asks Bitcoin Core takes. */
export interface BitcoinRpcCliOptions {
  bitcoinRpc?: string;
  bitcoinCookie?: string;
  bitcoinUser?: string;
  bitcoinPasswordEnv?: string;
}

export function bitcoinRpcOptions(command: Command, what: string): Command {
  return command
    .option('--bitcoin-rpc <url>', what)
    .option('--bitcoin-cookie <file>', 'Bitcoin Core RPC cookie file')
    .option('--bitcoin-user <user>', 'Bitcoin Core RPC user (with --bitcoin-password-env)')
    .option('--bitcoin-password-env <var>', 'environment variable holding the Bitcoin Core RPC password');
}

/** A client for `url` with the options' credentials; a password only ever comes from the environment. */
export function bitcoinClient(url: string, opts: BitcoinRpcCliOptions, timeoutMs?: number): BitcoinRpcClient {
  return new BitcoinRpcClient({ url, auth: bitcoinAuth(opts), retries: 1, ...(timeoutMs ? { timeoutMs } : {}) });
}

function bitcoinAuth(opts: BitcoinRpcCliOptions): RpcAuth | undefined {
  if (opts.bitcoinCookie !== undefined) return { cookieFile: opts.bitcoinCookie };
  if (opts.bitcoinUser === undefined) return undefined;
  const variable = opts.bitcoinPasswordEnv;
  const password = variable === undefined ? undefined : process.env[variable];
  if (password === undefined) {
    throw new CliError(
      `--bitcoin-user needs --bitcoin-password-env naming a set environment variable, got ${variable ?? 'none'}`,
    );
  }
  return { user: opts.bitcoinUser, password };
}
