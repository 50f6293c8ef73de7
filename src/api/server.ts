import { createServer, type IncomingMessage, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { isIP, type Socket } from 'node:net';
import type { Registry } from 'prom-client';
import { PegoutError } from '../errors.js';
import { parseRequestId } from '../evm/request-id.js';
import { AddressCounts, addressGroup } from '../p2p/admission.js';
import { bucketOf, TokenBucket } from '../p2p/ratelimit.js';
import { API_LIMITS } from './limits.js';
import { lookupCost, parseLookup } from './lookup.js';
import { loadPages, PAGE_HEADERS, type Pages } from './pages.js';
import type { StatusSource } from './status.js';

/** The HTTP API could not start. */
export class ApiError extends PegoutError<'listen_failed'> {
  readonly domain = 'api';
}

/** Addresses whose lookup rate is kept; past it the longest kept is forgotten. */
const TRACKED_ADDRESSES = 4096;

export interface ApiServer {
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A JSON answer (bigints as decimal text), of the API and the admin interface alike. Every answer is
 * made whole before its status line is written: once headers are out, a failure can no longer become
 * a 500, and a second writeHead would throw out of the error path itself.
 */
export function json(res: ServerResponse, status: number, body: unknown): void {
  send(
    res,
    status,
    'application/json',
    `${JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`,
  );
}

function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string,
  headers: OutgoingHttpHeaders = {},
): void {
  res.writeHead(status, { 'content-type': type, 'x-content-type-options': 'nosniff', ...headers });
  res.end(body);
}

/**
 * A route failed: a 500, or, should a response have been started after all, the connection cut. What
 * failed goes to the operator (`onError`), not to the client: a store's or a collector's message can
 * name the member's files.
 */
function failed(req: IncomingMessage, res: ServerResponse, err: Error, onError: RouteError | undefined): void {
  onError?.(req.url ?? '/', err);
  if (res.headersSent) res.destroy();
  else json(res, 500, { error: 'internal' });
}

/** Told of every route that failed, with the URL it was asked for. */
export type RouteError = (url: string, err: Error) => void;

function badRequest(res: ServerResponse, parameter: string, value: string | null, expected: string): void {
  json(res, 400, { error: 'bad_request', parameter, value, expected });
}

/** /pegouts?q=|evmTx=|evmAddress=|bitcoinAddress=|bitcoinTxid= [&limit=&cursor=]: one lookup, one page. */
async function lookup(res: ServerResponse, url: URL, source: StatusSource): Promise<void> {
  const parsed = parseLookup(url.searchParams);
  if ('parameter' in parsed) return badRequest(res, parsed.parameter, parsed.value, parsed.expected);
  const found = await source.lookup(parsed.lookup, parsed.page);
  if (!found) return json(res, 404, { error: 'not_found', [parsed.lookup.kind]: parsed.lookup.value });
  // the answer names the lookup by its kind too (`evmAddress: …`), as clients of the first version read it
  json(res, 200, { [found.kind]: found.value, ...found });
}

async function pegout(res: ServerResponse, encoded: string, source: StatusSource): Promise<void> {
  let id = encoded;
  try {
    id = decodeURIComponent(encoded);
    parseRequestId(id);
  } catch {
    return badRequest(res, 'id', id, '<0x tx hash>:<ordinal>');
  }
  const status = await source.pegout(id);
  return status ? json(res, 200, status) : json(res, 404, { error: 'not_found', id });
}

function page(res: ServerResponse, pages: Pages, name: string): boolean {
  const file = pages.get(name);
  if (!file) return false;
  res.writeHead(200, { 'content-type': file.type, ...PAGE_HEADERS });
  res.end(file.body);
  return true;
}

/**
 * Whether a request's Host header names this member as it is known: an IP address, localhost or a
 * configured name. A DNS-rebinding page (a name of the attacker's pointed at the member's address)
 * is same-origin with the API in the browser and only its Host header tells it apart; a client
 * without one is no browser.
 */
function knownHost(header: string | undefined, hostnames: ReadonlySet<string>): boolean {
  if (header === undefined) return true;
  if (/^\[[0-9a-fA-F:.]+\](:\d+)?$/.test(header)) return true;
  const name = header.replace(/:\d+$/, '').replace(/\.$/, '').toLowerCase();
  return isIP(name) !== 0 || name === 'localhost' || hostnames.has(name);
}

/**
 * Answers that read the store, a request's or a payment's records each, and /metrics, which renders
 * every counter (about 18 KB): what a client's rate holds.
 */
const LOOKUP_PATHS = /^\/(metrics|federation|overview|reserves|pegouts(\/[^/]*)?)$/;

interface Context {
  readonly source: StatusSource;
  readonly registry: Registry;
  readonly pages: Pages;
  /** Whether the client of `req` may make one more lookup, of `cost` (lookupCost), now. */
  readonly lookupAllowed: (req: IncomingMessage, cost: number) => boolean;
  /** Names besides IP addresses and localhost that clients reach this member by (config api.hostnames), lowercase. */
  readonly hostnames: ReadonlySet<string>;
}

async function route(req: IncomingMessage, res: ServerResponse, context: Context): Promise<void> {
  const { source, registry, pages } = context;
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://localhost');
  } catch {
    return badRequest(res, 'url', req.url ?? null, 'a path such as /pegouts?q=…');
  }
  if (!knownHost(req.headers.host, context.hostnames))
    return json(res, 421, {
      error: 'unknown_host',
      host: req.headers.host,
      expected: 'an IP address, localhost, or a name in the config field api.hostnames',
    });
  if (req.method !== 'GET') return json(res, 405, { error: 'method_not_allowed', allowed: 'GET' });
  if (LOOKUP_PATHS.test(url.pathname) && !context.lookupAllowed(req, lookupCost(url.searchParams)))
    return send(res, 429, 'application/json', '{"error":"too_many_requests"}\n', { 'retry-after': '1' });
  switch (url.pathname) {
    case '/health': {
      const h = await source.health();
      return json(res, h.ok ? 200 : 503, h);
    }
    case '/metrics':
      return send(res, 200, registry.contentType, await registry.metrics());
    case '/federation':
      return json(res, 200, await source.federation());
    case '/overview':
      return json(res, 200, await source.overview());
    case '/reserves': {
      const report = await source.reserves();
      return report ? json(res, 200, report) : json(res, 404, { error: 'not_found', path: url.pathname });
    }
    case '/pegouts':
      return lookup(res, url, source);
  }
  const one = /^\/pegouts\/([^/]+)$/.exec(url.pathname);
  if (one) return pegout(res, one[1]!, source);
  if (page(res, pages, url.pathname)) return;
  return json(res, 404, { error: 'not_found', path: url.pathname });
}

/** Connections with an answer not yet sent whole. */
const answering = new WeakSet<Socket>();

/**
 * Whether `req` may be answered: a connection has one answer on its way at a time, and a request
 * that comes before it left closes the connection. Node answers every request a client pipelines
 * in one read (1,600 small ones in 64 KiB), and a client that never read held each answer in the
 * member's heap past every deadline. No browser or scraper pipelines.
 */
function oneAnswerAtATime(req: IncomingMessage, res: ServerResponse): boolean {
  const { socket } = req;
  if (answering.has(socket)) {
    socket.destroy();
    return false;
  }
  answering.add(socket);
  res.once('close', () => answering.delete(socket));
  return true;
}

/**
 * The member's HTTP API, read-only: JSON at /health, /federation, /overview, /reserves, /pegouts/:id
 * and /pegouts?… (lookups); Prometheus text at /metrics; the status pages at / (users) and /operator.
 */
export async function startApi(options: {
  host: string;
  port: number;
  source: StatusSource;
  registry: Registry;
  limits?: Partial<typeof API_LIMITS>;
  /** Names clients reach this member by, besides IP addresses and localhost (config api.hostnames). */
  hostnames?: readonly string[];
  onError?: RouteError;
}): Promise<ApiServer> {
  const limits = { ...API_LIMITS, ...options.limits };
  const rates = new Map<string, TokenBucket>();
  const { lookupsPerSecond, lookupsPerSecondTotal } = limits;
  const allLookups = new TokenBucket(lookupsPerSecondTotal, lookupsPerSecondTotal * 5);
  const context: Context = {
    source: options.source,
    registry: options.registry,
    pages: await loadPages(),
    hostnames: new Set(options.hostnames?.map((h) => h.toLowerCase())),
    // the address's own rate first: a lookup it refuses takes nothing from what every client shares
    lookupAllowed: (req, cost) =>
      bucketOf(
        rates,
        addressGroup(req.socket.remoteAddress ?? ''),
        TRACKED_ADDRESSES,
        () => new TokenBucket(lookupsPerSecond, lookupsPerSecond * 5),
      ).take(cost) && allLookups.take(cost),
  };
  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: Math.max(limits.requestTimeoutMs, limits.headersTimeoutMs),
      // how often the deadlines are checked: Node's 30 s would hold a silent client that much longer
      connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs),
    },
    (req, res) => {
      if (!oneAnswerAtATime(req, res)) return;
      route(req, res, context).catch((err: Error) => failed(req, res, err, options.onError));
    },
  );
  // an answer that stops leaving (a client that does not read) closes its connection, as a silent request does
  server.setTimeout(limits.requestTimeoutMs, (socket: Socket) => socket.destroy());
  server.maxConnections = limits.connections;
  const perAddress = new AddressCounts(limits.connectionsPerAddress);
  server.on('connection', (socket: Socket) => {
    const address = addressGroup(socket.remoteAddress ?? '');
    if (!perAddress.add(address)) return socket.destroy();
    socket.once('close', () => perAddress.remove(address));
  });
  await new Promise<void>((resolve, reject) => {
    const { host, port } = options;
    // named like the links' listen failure: a port another process holds is the operator's to fix, not a crash
    server.once('error', (err) =>
      reject(
        new ApiError(
          'listen_failed',
          `cannot listen on ${host}:${port}: ${err.message}`,
          { host, port },
          { cause: err },
        ),
      ),
    );
    server.listen(port, host, resolve);
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : options.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
