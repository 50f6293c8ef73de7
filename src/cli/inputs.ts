import { readFile } from 'node:fs/promises';
import { fromHex } from '../bitcoin/bytes.js';
import { parseFederationFile, type Federation } from '../bitcoin/federation.js';
import { parsePrevouts, parseTx, type Prevout, type Transaction } from '../bitcoin/tx.js';
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

export async function loadFederation(path: string): Promise<Federation> {
  return parseFederationFile(await readJsonFile(path, '--federation'), `--federation ${path}`);
}

export function loadTx(hex: string): Transaction {
  return parseTx(fromHex(hex.trim(), '--tx'));
}

export async function loadPrevouts(path: string, tx: Transaction): Promise<Prevout[]> {
  return parsePrevouts(await readJsonFile(path, '--prevouts'), tx.inputs.length);
}
