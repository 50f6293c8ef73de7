import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, link, lstat, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, request, type IncomingMessage } from 'node:http';
import path from 'node:path';
import { isPegoutError, PegoutError } from '../errors.js';
import { json } from './server.js';

// The admin interface: what an operator does to its own member (holds, pause, resume). It listens
// on a Unix socket beside the store, never on a TCP port, and answers only a caller that presents
// the token from a 0600 file; the public API has none of these routes.

export class AdminError extends PegoutError<
  'unauthorized' | 'admin_unreachable' | 'admin_refused' | 'socket_path' | 'bad_request'
> {
  readonly domain = 'admin';
}

/** What the admin interface acts on; the member provides it. */
export interface AdminActions {
  holds(): Promise<unknown>;
  release(id: string): Promise<unknown>;
  reject(id: string): Promise<unknown>;
  pause(reason: string): Promise<unknown>;
  resume(): Promise<unknown>;
  state(): Promise<unknown>;
}

export interface AdminPaths {
  readonly socket: string;
  readonly tokenFile: string;
}

/** Where a member's admin socket and token live when the config does not say: beside its store. */
export function adminPaths(storeDir: string, configured: { socket: string | null; tokenFile: string | null }) {
  return {
    socket: configured.socket ?? path.join(storeDir, 'admin.sock'),
    tokenFile: configured.tokenFile ?? path.join(storeDir, 'admin.token'),
  } satisfies AdminPaths;
}

/** Unix socket paths are limited to 107 bytes on Linux (sun_path). */
const MAX_SOCKET_PATH = 107;

/** Shorter tokens are refused: an empty one would let in a caller presenting none. */
const MIN_TOKEN_LENGTH = 32;

/**
 * The token from the file, made (32 random bytes, hex, mode 0600) when absent; one others can read,
 * or shorter than MIN_TOKEN_LENGTH, is refused.
 */
async function loadToken(file: string): Promise<Buffer> {
  try {
    const st = await stat(file);
    if ((st.mode & 0o077) !== 0)
      throw new AdminError(
        'admin_refused',
        `admin token file ${file} has mode ${(st.mode & 0o777).toString(8)}; expected 600 (readable by its owner only)`,
        { file },
      );
    const token = (await readFile(file, 'utf8')).trim();
    if (token.length < MIN_TOKEN_LENGTH)
      throw new AdminError(
        'admin_refused',
        `admin token file ${file} holds ${token.length} characters; expected at least ${MIN_TOKEN_LENGTH} (remove it and the member makes a new one)`,
        { file },
      );
    return Buffer.from(token);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const token = randomBytes(32).toString('hex');
    // written whole under another name, then linked into place (which fails if the file appeared
    // meanwhile): a crash never leaves a token file cut short
    const partial = `${file}.${process.pid}.partial`;
    await writeFile(partial, `${token}\n`, { mode: 0o600 });
    try {
      await link(partial, file);
    } finally {
      await rm(partial, { force: true });
    }
    return Buffer.from(token);
  }
}

function authorized(req: IncomingMessage, token: Buffer): boolean {
  const given = Buffer.from(/^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1] ?? '');
  return given.length === token.length && timingSafeEqual(given, token);
}

/** A command's input is wrong: answered 400, naming the parameter, its value and what was expected. */
function badRequest(parameter: string, value: unknown, expected: string): AdminError {
  return new AdminError('bad_request', `${parameter} ${JSON.stringify(value)} is not ${expected}`, {
    parameter,
    value,
    expected,
  });
}

/** The request body as JSON, at most 4 KiB (an admin command is a reason line at most). */
async function jsonBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > 4096) throw new AdminError('admin_refused', 'request body over 4 KiB');
    chunks.push(chunk);
  }
  // decoded whole: a character's bytes may be split between two chunks
  const text = Buffer.concat(chunks).toString('utf8');
  let parsed: unknown = {};
  try {
    if (text) parsed = JSON.parse(text);
  } catch {
    throw badRequest('body', text, 'a JSON object');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
    throw badRequest('body', text, 'a JSON object');
  return parsed as Record<string, unknown>;
}

function decodedId(encoded: string): string {
  try {
    return decodeURIComponent(encoded);
  } catch {
    throw badRequest('id', encoded, 'a percent-encoded request id');
  }
}

async function route(req: IncomingMessage, actions: AdminActions): Promise<[number, unknown]> {
  const url = new URL(req.url ?? '/', 'http://admin');
  const hold = /^\/holds\/([^/]+)\/(release|reject)$/.exec(url.pathname);
  if (req.method === 'GET' && url.pathname === '/holds') return [200, await actions.holds()];
  if (req.method === 'GET' && url.pathname === '/state') return [200, await actions.state()];
  if (req.method === 'POST' && hold) {
    const id = decodedId(hold[1]!);
    return [200, await (hold[2] === 'release' ? actions.release(id) : actions.reject(id))];
  }
  if (req.method === 'POST' && url.pathname === '/pause') {
    const reason = (await jsonBody(req)).reason;
    if (typeof reason !== 'string' || reason.trim() === '' || reason.length > 500)
      throw badRequest('reason', reason ?? null, '1–500 characters');
    return [200, await actions.pause(reason.trim())];
  }
  if (req.method === 'POST' && url.pathname === '/resume') return [200, await actions.resume()];
  return [404, { error: 'not_found', method: req.method, path: url.pathname }];
}

/**
 * Removes a socket left at `socket` by a member that was killed (nobody listens on it any more).
 * Anything else there is refused, not removed: a typo in admin.socket naming the member's key file
 * would otherwise delete the signing key.
 */
async function removeStaleSocket(socket: string): Promise<void> {
  let st;
  try {
    st = await lstat(socket);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket())
    throw new AdminError(
      'socket_path',
      `admin.socket ${socket} exists and is not a socket; expected a path that is absent or a socket left by an earlier run (set admin.socket to another path)`,
      { socket },
    );
  // force: another start racing this one may have removed it already
  await rm(socket, { force: true });
}

export interface AdminServer {
  readonly socket: string;
  close(): Promise<void>;
}

export async function startAdmin(paths: AdminPaths, actions: AdminActions): Promise<AdminServer> {
  if (Buffer.byteLength(paths.socket) > MAX_SOCKET_PATH)
    throw new AdminError(
      'socket_path',
      `admin socket path ${paths.socket} is over ${MAX_SOCKET_PATH} bytes (the Unix socket limit); set admin.socket to a shorter path`,
      { socket: paths.socket },
    );
  const token = await loadToken(paths.tokenFile);
  const server = createServer((req, res) => {
    if (!authorized(req, token)) return json(res, 401, { error: 'unauthorized', expected: 'Bearer <admin token>' });
    route(req, actions)
      .then(([status, body]) => json(res, status, body))
      .catch((err: unknown) => {
        if (err instanceof AdminError && err.code === 'bad_request')
          return json(res, 400, { error: 'bad_request', ...err.details });
        const coded = isPegoutError(err);
        json(res, coded ? 409 : 500, {
          error: coded ? err.code : 'internal',
          message: (err as Error).message,
        });
      });
  });
  await removeStaleSocket(paths.socket);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(paths.socket, resolve);
  });
  await chmod(paths.socket, 0o600);
  return {
    socket: paths.socket,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** One admin call from the CLI: the member's answer, or an AdminError saying why not. */
export async function callAdmin(
  paths: AdminPaths,
  method: 'GET' | 'POST',
  route: string,
  body?: Record<string, unknown>,
): Promise<unknown> {
  let token: string;
  try {
    token = (await readFile(paths.tokenFile, 'utf8')).trim();
  } catch (err) {
    throw new AdminError(
      'admin_unreachable',
      `cannot read the admin token file ${paths.tokenFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (is the member running, and is this its config?)`,
    );
  }
  const payload = body ? JSON.stringify(body) : undefined;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: paths.socket,
        method,
        path: route,
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        timeout: 30_000,
      },
      (res) => {
        let text = '';
        res.on('data', (chunk) => (text += String(chunk)));
        res.on('end', () => {
          const parsed = JSON.parse(text || 'null') as { error?: string; message?: string } | null;
          if (res.statusCode === 200) return resolve(parsed);
          reject(
            new AdminError(
              res.statusCode === 401 ? 'unauthorized' : 'admin_refused',
              `${parsed?.error ?? `HTTP ${res.statusCode}`}: ${parsed?.message ?? JSON.stringify(parsed)}`,
            ),
          );
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 30 s')));
    req.on('error', (err: NodeJS.ErrnoException) =>
      reject(new AdminError('admin_unreachable', `admin socket ${paths.socket}: ${err.code ?? err.message}`)),
    );
    req.end(payload);
  });
}
