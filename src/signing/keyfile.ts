import { randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { fromHexLength } from '../bitcoin/bytes.js';
import { SigningError } from './errors.js';
import { schnorrBackend } from './schnorr.js';

/**
 * A member key file is JSON `{"secretKey": "<64 hex>"}` readable by its owner only (mode 0600
 * or stricter). Nothing here ever puts the key into a message.
 */
export async function readKeyFile(path: string): Promise<Uint8Array> {
  let mode: number;
  try {
    mode = (await stat(path)).mode & 0o777;
  } catch (err) {
    throw new SigningError(
      'invalid_key_file',
      `cannot read key file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { path },
    );
  }
  if ((mode & 0o077) !== 0) {
    throw new SigningError(
      'invalid_key_file',
      `key file ${path} has mode ${mode.toString(8).padStart(4, '0')}; it must not be readable by group or others (chmod 600 ${path})`,
      { path, mode: mode.toString(8) },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    throw new SigningError(
      'invalid_key_file',
      `key file ${path} is not JSON of the form {"secretKey": "<64 hex characters>"}`,
      { path },
    );
  }
  return parseSecretKey((json as { secretKey?: unknown } | null)?.secretKey, `key file ${path}`);
}

/** Checks a hex secret key (from a file or an environment variable) without echoing it. */
export function parseSecretKey(value: unknown, source: string): Uint8Array {
  let key: Uint8Array;
  try {
    if (typeof value !== 'string') throw new Error();
    key = fromHexLength(value, 32, 'secretKey', true);
    schnorrBackend().xonlyPublicKey(key);
  } catch {
    throw new SigningError(
      'invalid_key_file',
      `${source}: secretKey must be 64 hex characters encoding a valid secp256k1 secret key`,
      { source },
    );
  }
  return key;
}

/**
 * The hex secret key in environment variable `name`, deleted from `env` as it is read: processes
 * started later do not inherit it and no later code finds it. (The kernel's copy of the initial
 * environment, /proc/<pid>/environ, stays; only the same user and root can read it.)
 */
export function takeSecretKeyFromEnv(env: NodeJS.ProcessEnv, name: string): Uint8Array {
  const value = env[name];
  delete env[name];
  return parseSecretKey(value, `environment variable ${name}`);
}

/** Writes a new key file with mode 0600; never overwrites an existing file. */
export async function writeKeyFile(path: string, secretKey: Uint8Array): Promise<void> {
  try {
    await writeFile(path, `${JSON.stringify({ secretKey: Buffer.from(secretKey).toString('hex') })}\n`, {
      mode: 0o600,
      flag: 'wx',
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new SigningError(
      'invalid_key_file',
      code === 'EEXIST'
        ? `${path} already exists; refusing to overwrite a key file`
        : `cannot write key file ${path}: ${code ?? (err as Error).message}`,
      { path },
    );
  }
}

/** A fresh secret key from the OS CSPRNG (retried in the 2^-128 case that it is out of range). */
export function generateSecretKey(): Uint8Array {
  for (;;) {
    const candidate = new Uint8Array(randomBytes(32));
    try {
      schnorrBackend().xonlyPublicKey(candidate);
      return candidate;
    } catch {
      continue;
    }
  }
}
