import { API_LIMITS } from '../api/limits.js';
import { DEFAULT_MAX_FEE_MULTIPLE, DEFAULT_MAX_SHARE_PER_REQUEST } from '../wallet/fee.js';
import { DEFAULT_MAX_HANDOFF_FEE } from '../wallet/handoff.js';
import { DEFAULT_LIMITS } from '../wallet/limits.js';
import { readFile } from 'node:fs/promises';
import { dirname, resolve as resolvePath } from 'node:path';
import { availableParallelism } from 'node:os';
import { PegoutError } from '../errors.js';
import { NETWORK_NAMES, type Network } from '../bitcoin/network.js';

export class ConfigError extends PegoutError<'invalid_config'> {
  readonly domain = 'config';
  constructor(message: string, details?: Record<string, unknown>) {
    super('invalid_config', message, details);
  }
}

/** A member's configuration. Every field is documented in docs/config.md. */
export interface Config {
  readonly network: Network;
  readonly federation: { readonly threshold: number; readonly pubkeys: readonly string[] };
  /** Member key file (mode 0600); or the key in the PEGOUT_MEMBER_KEY environment variable. */
  readonly memberKeyFile: string | null;
  readonly storeDir: string;
  readonly p2p: { readonly host: string; readonly port: number; readonly peers: Readonly<Record<string, string>> };
  readonly api: {
    readonly host: string;
    readonly port: number;
    readonly lookupsPerSecond: number;
    readonly lookupsPerSecondTotal: number;
    /** Names clients reach the API by, besides IP addresses and localhost: any other Host header is refused. */
    readonly hostnames: readonly string[];
  };
  readonly evm: {
    readonly rpcUrl: string;
    readonly bridge: string;
    readonly confirmations: number;
    readonly useFinalizedTag: boolean;
    readonly startBlock: number;
    readonly pollMs: number;
  };
  readonly bitcoin: {
    readonly rpcUrl: string;
    readonly cookieFile: string | null;
    readonly user: string | null;
    readonly password: string | null;
    readonly startHeight: number;
    readonly confTarget: number;
    readonly fallbackFeeRate: number;
    readonly maxFeeRate: number;
    readonly paidConfirmations: number;
    readonly spendConfirmations: number;
    readonly rbfAfterBlocks: number;
    readonly pollMs: number;
  } | null;
  /** Without Bitcoin Core only: federation outputs the devnet declares; they exist on no chain. */
  readonly declaredFunding: { readonly count: number; readonly sats: number; readonly feeRate: number } | null;
  readonly rounds: { readonly slotMs: number; readonly maxOutputs: number };
  /** What this member accepts as a payment's fee (wallet/fee.ts FeePolicy). */
  readonly fees: { readonly maxMultiple: number; readonly maxSharePerRequest: number };
  /** Outflow limits this member signs within (wallet/limits.ts); sats as numbers, see docs/config.md. */
  readonly limits: { readonly maxRequestSats: number; readonly windowSats: number; readonly windowBlocks: number };
  /** The admin interface: a Unix socket beside the store, answering only callers with the token file's token. */
  readonly admin: { readonly socket: string | null; readonly tokenFile: string | null };
  /** A membership change this member takes part in (docs/rotation.md); sats as numbers. */
  readonly rotation: { readonly plan: string; readonly testAmount: number; readonly maxFee: number } | null;
  readonly workers: number;
  readonly logLevel: 'debug' | 'info' | 'warn' | 'error';
}

type Kind = 'string' | 'path' | 'int' | 'number' | 'bool' | 'network' | 'hexkeys' | 'peers' | 'level' | 'hostnames';
interface Field {
  readonly kind: Kind;
  readonly default?: unknown;
  readonly min?: number;
  readonly max?: number;
  readonly nullable?: boolean;
  readonly secret?: boolean;
}
type Schema = { readonly [name: string]: Field | Schema };

const port: Field = { kind: 'int', min: 0, max: 65535 };
/** 21 million BTC: below 2^53, so every amount in sats is an exact JSON number. */
const MAX_SATS = 2_100_000_000_000_000;
const SCHEMA: Schema = {
  network: { kind: 'network' },
  federation: { threshold: { kind: 'int', min: 1, max: 999 }, pubkeys: { kind: 'hexkeys' } },
  memberKeyFile: { kind: 'path', nullable: true, default: null },
  storeDir: { kind: 'path' },
  p2p: { host: { kind: 'string', default: '127.0.0.1' }, port, peers: { kind: 'peers', default: {} } },
  api: {
    host: { kind: 'string', default: '127.0.0.1' },
    port,
    lookupsPerSecond: { kind: 'int', min: 1, max: 1_000_000, default: API_LIMITS.lookupsPerSecond },
    lookupsPerSecondTotal: { kind: 'int', min: 1, max: 1_000_000, default: API_LIMITS.lookupsPerSecondTotal },
    hostnames: { kind: 'hostnames', default: [] },
  },
  evm: {
    rpcUrl: { kind: 'string' },
    bridge: { kind: 'string', default: '0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB' },
    confirmations: { kind: 'int', min: 0, max: 10_000, default: 6 },
    useFinalizedTag: { kind: 'bool', default: false },
    startBlock: { kind: 'int', min: 0, default: 0 },
    pollMs: { kind: 'int', min: 10, default: 1000 },
  },
  bitcoin: {
    rpcUrl: { kind: 'string' },
    cookieFile: { kind: 'path', nullable: true, default: null },
    user: { kind: 'string', nullable: true, default: null },
    password: { kind: 'string', nullable: true, default: null, secret: true },
    startHeight: { kind: 'int', min: 0, default: 0 },
    confTarget: { kind: 'int', min: 1, max: 1008, default: 6 },
    fallbackFeeRate: { kind: 'number', min: 1, max: 100_000, default: 2 },
    maxFeeRate: { kind: 'number', min: 1, max: 100_000, default: 500 },
    paidConfirmations: { kind: 'int', min: 1, max: 1000, default: 6 },
    spendConfirmations: { kind: 'int', min: 1, max: 1000, default: 6 },
    rbfAfterBlocks: { kind: 'int', min: 1, max: 1000, default: 3 },
    pollMs: { kind: 'int', min: 10, default: 1000 },
  },
  declaredFunding: {
    count: { kind: 'int', min: 1, max: 100_000 },
    sats: { kind: 'int', min: 1000, max: MAX_SATS },
    feeRate: { kind: 'number', min: 1, max: 100_000, default: 2 },
  },
  rounds: {
    slotMs: { kind: 'int', min: 50, default: 2000 },
    maxOutputs: { kind: 'int', min: 3, max: 2000, default: 100 },
  },
  fees: {
    maxMultiple: { kind: 'number', min: 1, max: 100, default: DEFAULT_MAX_FEE_MULTIPLE },
    maxSharePerRequest: {
      kind: 'int',
      min: 1,
      max: MAX_SATS,
      default: Number(DEFAULT_MAX_SHARE_PER_REQUEST),
    },
  },
  limits: {
    maxRequestSats: { kind: 'int', min: 1, max: MAX_SATS, default: Number(DEFAULT_LIMITS.maxRequestSats) },
    windowSats: { kind: 'int', min: 1, max: MAX_SATS, default: Number(DEFAULT_LIMITS.windowSats) },
    windowBlocks: { kind: 'int', min: 1, max: 100_000, default: DEFAULT_LIMITS.windowBlocks },
  },
  admin: {
    socket: { kind: 'path', nullable: true, default: null },
    tokenFile: { kind: 'path', nullable: true, default: null },
  },
  rotation: {
    plan: { kind: 'path' },
    testAmount: { kind: 'int', min: 1000, max: MAX_SATS, default: 100_000 },
    maxFee: { kind: 'int', min: 1, max: MAX_SATS, default: Number(DEFAULT_MAX_HANDOFF_FEE) },
  },
  workers: { kind: 'int', min: 0, max: 256, default: 0 },
  logLevel: { kind: 'level', default: 'info' },
};
/** Sections that may be null: Bitcoin Core (null: the devnet without bitcoind), declared funding, a rotation. */
const NULLABLE_SECTIONS = new Set(['bitcoin', 'declaredFunding', 'rotation']);
const LEVELS = ['debug', 'info', 'warn', 'error'];
const DNS_NAME =
  /^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

function isField(x: Field | Schema): x is Field {
  return typeof (x as Field).kind === 'string';
}

/** `evm.rpcUrl` → `PEGOUT_EVM_RPC_URL`. */
export function envName(path: readonly string[]): string {
  return `PEGOUT_${path.map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_')}`;
}

/** `shown` stands in for the value where printing it could leak a secret. */
function fail(path: string, value: unknown, expected: string, shown = JSON.stringify(value)): never {
  throw new ConfigError(`config field ${path} is ${shown}; expected ${expected}`, { field: path });
}

/** A value's JSON type, for an error about a value that may hold secrets: "an array", "null", "a string"… */
function jsonType(value: unknown): string {
  if (value === null) return 'null';
  const type = Array.isArray(value) ? 'array' : typeof value;
  return `${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type}`;
}

/**
 * Where a config's relative paths start: the config file's directory for a value in the file (a
 * member started from another directory must not open a new, empty store there and forget what it
 * signed), the working directory for one from the environment; none for parseConfig without a file.
 */
type PathBase = string | undefined;

function parseField(f: Field, path: string, value: unknown, fromEnv: boolean, base: PathBase): unknown {
  if (value === null && f.nullable) return null;
  switch (f.kind) {
    case 'path':
      if (typeof value !== 'string' || value.length === 0) fail(path, value, 'a non-empty file or directory path');
      return fromEnv ? resolvePath(value) : base === undefined ? value : resolvePath(base, value);
    case 'string':
      if (typeof value !== 'string' || value.length === 0)
        fail(path, value, 'a non-empty string', f.secret ? '[redacted]' : undefined);
      return value;
    case 'bool':
      if (fromEnv && (value === 'true' || value === 'false')) return value === 'true';
      if (typeof value !== 'boolean') fail(path, value, 'true or false');
      return value;
    case 'int':
    case 'number': {
      // Number() would also read hex, binary, exponents and blanks around the digits
      const decimal = f.kind === 'int' ? /^-?\d+$/ : /^-?\d+(\.\d+)?$/;
      const n = fromEnv && typeof value === 'string' && decimal.test(value) ? Number(value) : value;
      const range = `${f.min ?? '-∞'}..${f.max ?? '∞'}`;
      if (
        typeof n !== 'number' ||
        !Number.isFinite(n) ||
        (f.kind === 'int' && !Number.isInteger(n)) ||
        (f.min !== undefined && n < f.min) ||
        (f.max !== undefined && n > f.max)
      ) {
        const written = fromEnv ? ', written in plain decimal' : '';
        fail(path, value, `${f.kind === 'int' ? 'an integer' : 'a number'} in ${range}${written}`);
      }
      return n;
    }
    case 'level':
      if (typeof value !== 'string' || !LEVELS.includes(value)) fail(path, value, `one of ${LEVELS.join(', ')}`);
      return value;
    case 'network':
      if (typeof value !== 'string' || !(NETWORK_NAMES as string[]).includes(value))
        fail(path, value, `one of ${NETWORK_NAMES.join(', ')}`);
      return value;
    case 'hexkeys': {
      const list = fromEnv && typeof value === 'string' ? value.split(',') : value;
      if (
        !Array.isArray(list) ||
        list.length === 0 ||
        !list.every((k) => typeof k === 'string' && /^[0-9a-f]{64}$/.test(k))
      )
        fail(path, value, 'a non-empty list of 64-character lowercase hex x-only keys');
      return list;
    }
    case 'hostnames': {
      const list = fromEnv && typeof value === 'string' ? value.split(',') : value;
      if (!Array.isArray(list) || !list.every((h) => typeof h === 'string' && DNS_NAME.test(h)))
        fail(path, value, 'a list of DNS names such as "status.example.org" (no scheme, port or path)');
      return list.map((h: string) => h.toLowerCase());
    }
    case 'peers':
      return parsePeers(path, value, fromEnv);
  }
}

const PEERS = 'an object {"<x-only key hex>": "wss://host:port"}';
const PEER_URL =
  'a wss:// URL (links run over TLS only) of the form wss://host:port: a host, a port in 1..65535 written out, no user name or password, path, query or fragment';

/**
 * Only what the links can dial: a URL refused there stops the member later with an uncaught error that
 * prints it whole. An empty host or a port above 65535 does not parse.
 */
function isPeerUrl(text: string): boolean {
  // URL drops a port equal to wss's default (443), so whether one was written is read from the text
  if (!/^wss:\/\/\S+:\d+\/?$/.test(text)) return false;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return false;
  }
  return (
    url.port !== '0' &&
    url.username === '' &&
    url.password === '' &&
    url.search === '' &&
    url.hash === '' &&
    url.pathname === '/'
  );
}

/** Cut to the last '@', not the URL's own userinfo: a URL that does not parse has no parts to trust. */
function withoutCredentials(text: string): string {
  return text.replace(/^([a-z][a-z0-9+.-]*:\/\/)?.*@/is, '$1[redacted credentials]@');
}

function parsePeers(path: string, value: unknown, fromEnv: boolean): Record<string, string> {
  let map = value;
  if (fromEnv && typeof value === 'string') {
    try {
      map = JSON.parse(value);
    } catch {
      fail(path, value, PEERS, 'not valid JSON');
    }
  }
  if (typeof map !== 'object' || map === null || Array.isArray(map)) fail(path, map, PEERS, jsonType(map));
  for (const [k, v] of Object.entries(map)) {
    // a key and its URL written the wrong way round puts the URL in the name
    const name = withoutCredentials(k);
    if (!/^[0-9a-f]{64}$/.test(k))
      fail(`${path}.${name}`, k, 'a 64-character lowercase hex x-only key as the name', JSON.stringify(name));
    if (typeof v !== 'string' || !isPeerUrl(v))
      fail(`${path}.${k}`, v, PEER_URL, typeof v === 'string' ? JSON.stringify(withoutCredentials(v)) : jsonType(v));
  }
  return map as Record<string, string>;
}

function parseSection(
  schema: Schema,
  json: unknown,
  env: NodeJS.ProcessEnv,
  path: string[],
  base: PathBase,
): Record<string, unknown> {
  const where = path.length ? path.join('.') : 'the config';
  // a misspelled field or a section of the wrong shape may hold a password: only its type is shown
  if (typeof json !== 'object' || json === null || Array.isArray(json)) fail(where, json, 'an object', jsonType(json));
  const obj = json as Record<string, unknown>;
  for (const key of Object.keys(obj)) {
    if (!Object.hasOwn(schema, key))
      fail(
        [...path, key].join('.'),
        obj[key],
        `no such field (known: ${Object.keys(schema).join(', ')})`,
        jsonType(obj[key]),
      );
  }
  const out: Record<string, unknown> = {};
  for (const [name, sub] of Object.entries(schema)) {
    const p = [...path, name];
    const dotted = p.join('.');
    if (!isField(sub)) {
      if (obj[name] === null && NULLABLE_SECTIONS.has(name)) {
        out[name] = null;
        continue;
      }
      if (
        obj[name] === undefined &&
        NULLABLE_SECTIONS.has(name) &&
        !Object.keys(env).some((k) => k.startsWith(`${envName(p)}_`))
      ) {
        out[name] = null;
        continue;
      }
      out[name] = parseSection(sub, obj[name] ?? {}, env, p, base);
      continue;
    }
    const fromEnv = env[envName(p)];
    if (fromEnv !== undefined) out[name] = parseField(sub, `${dotted} (from ${envName(p)})`, fromEnv, true, base);
    else if (obj[name] !== undefined) out[name] = parseField(sub, dotted, obj[name], false, base);
    else if ('default' in sub) out[name] = sub.default;
    else fail(dotted, undefined, `a value (${sub.kind}); it has no default`);
  }
  return out;
}

/** Whether the field at `path` was given, in the file or by its variable, rather than left to its default. */
function given(json: unknown, env: NodeJS.ProcessEnv, path: readonly string[]): boolean {
  if (env[envName(path)] !== undefined) return true;
  let at: unknown = json;
  for (const name of path)
    at = typeof at === 'object' && at !== null ? (at as Record<string, unknown>)[name] : undefined;
  return at !== undefined;
}

/**
 * What the defaults leave open on test networks: the outflow limits (100 BTC a request without a
 * human look, 1,000,000 BTC a window: no cap) are the operators' to choose, and a block at the
 * EVM tip may still be reorganised away.
 */
function checkMainnet(raw: Config, json: unknown, env: NodeJS.ProcessEnv): void {
  for (const field of ['maxRequestSats', 'windowSats'])
    if (!given(json, env, ['limits', field]))
      fail(
        `limits.${field}`,
        undefined,
        'on mainnet a value the operators chose (docs/config.md suggests some); the default is for test networks',
        'not set',
      );
  if (raw.evm.confirmations < 1 && !raw.evm.useFinalizedTag)
    fail(
      'evm.confirmations',
      0,
      'at least 1 on mainnet (or evm.useFinalizedTag): a block at the tip may be reorganised',
    );
}

/**
 * The config from parsed JSON plus `PEGOUT_*` environment overrides; relative paths in `json` are
 * read from `base` (the config file's directory) when given.
 */
export function parseConfig(json: unknown, env: NodeJS.ProcessEnv = {}, base?: string): Config {
  const raw = parseSection(SCHEMA, json, env, [], base) as unknown as Config & { workers: number };
  const n = raw.federation.pubkeys.length;
  if (raw.federation.threshold > n)
    fail('federation.threshold', raw.federation.threshold, `at most the number of pubkeys (${n})`);
  // With t ≤ n/2 two disjoint sets of t members could each finalize a different payment of
  // the same request; each honest member signs only one, so t > n/2 rules that out.
  if (raw.federation.threshold * 2 <= n)
    fail(
      'federation.threshold',
      raw.federation.threshold,
      `more than half the members (at least ${Math.floor(n / 2) + 1} of ${n})`,
    );
  if (raw.bitcoin && raw.bitcoin.cookieFile === null && (raw.bitcoin.user === null || raw.bitcoin.password === null)) {
    fail('bitcoin', '{…}', 'cookieFile, or both user and password, for Bitcoin Core RPC authentication');
  }
  // an output is spent only once a reorganisation that could take it away is out of scope: a payment
  // spending one that left the chain could never confirm, and its requests would wait for it for good
  if (raw.bitcoin && raw.bitcoin.spendConfirmations < raw.bitcoin.paidConfirmations)
    fail(
      'bitcoin.spendConfirmations',
      raw.bitcoin.spendConfirmations,
      `at least bitcoin.paidConfirmations (${raw.bitcoin.paidConfirmations}): a shallower output may be reorganised away under the payment that spends it`,
    );
  if (raw.bitcoin && raw.declaredFunding)
    fail(
      'declaredFunding',
      '{…}',
      'null when bitcoin is configured: declared outputs exist on no chain and are for the devnet without Bitcoin Core',
    );
  if (raw.network === 'mainnet') checkMainnet(raw, json, env);
  // a request under the per-request limit must fit a window, or the first-come queue would stop at it for ever
  if (raw.limits.maxRequestSats > raw.limits.windowSats)
    fail('limits.maxRequestSats', raw.limits.maxRequestSats, `at most limits.windowSats (${raw.limits.windowSats})`);
  // the handoff is read from the chain: the test output's spend, confirmations, the old address's outputs
  if (raw.rotation && !raw.bitcoin)
    fail('rotation', '{…}', 'null without bitcoin: a membership change moves real outputs and is watched on the chain');
  if (raw.memberKeyFile === null && !env.PEGOUT_MEMBER_KEY)
    fail('memberKeyFile', null, 'a key file path, or the key in the PEGOUT_MEMBER_KEY environment variable');
  return { ...raw, workers: raw.workers === 0 ? availableParallelism() : raw.workers };
}

export async function loadConfig(path: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `cannot read config file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
      { path },
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config file ${path} is not valid JSON: ${(err as Error).message}`, { path });
  }
  return parseConfig(json, env, dirname(resolvePath(path)));
}
