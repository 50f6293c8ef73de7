import { bucketOf, TokenBucket } from '../p2p/ratelimit.js';

// Structured logs: one JSON object per line, {"ts","level","event",…fields}. Field names that
// smell of secrets are redacted here, at the one place every log line passes through.

export type Level = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };
const SECRET_NAME = /secret|private|password|passwd|cookie|seed|mnemonic|^key$|secretkey|privkey|token|authorization/i;

export interface Logger {
  debug(event: string, fields?: Record<string, unknown>): void;
  info(event: string, fields?: Record<string, unknown>): void;
  warn(event: string, fields?: Record<string, unknown>): void;
  error(event: string, fields?: Record<string, unknown>): void;
  child(bound: Record<string, unknown>): Logger;
}

function redact(value: unknown, depth = 0): unknown {
  if (depth > 6 || value === null || typeof value !== 'object')
    return typeof value === 'bigint' ? value.toString() : value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('hex');
  if (value instanceof Error)
    return {
      name: value.name,
      message: value.message,
      ...('code' in value ? { code: (value as { code: unknown }).code } : {}),
    };
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SECRET_NAME.test(k) ? '[redacted]' : redact(v, depth + 1);
  return out;
}

export function createLogger(
  options: { level?: Level; write?: (line: string) => void; bound?: Record<string, unknown> } = {},
): Logger {
  const min = ORDER[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stdout.write(line));
  const bound = options.bound ?? {};
  const emit = (level: Level, event: string, fields: Record<string, unknown> = {}): void => {
    if (ORDER[level] < min) return;
    const record = redact({ ...bound, ...fields }) as Record<string, unknown>;
    write(`${JSON.stringify({ ts: new Date().toISOString(), level, event, ...record })}\n`);
  };
  return {
    debug: (e, f) => emit('debug', e, f),
    info: (e, f) => emit('info', e, f),
    warn: (e, f) => emit('warn', e, f),
    error: (e, f) => emit('error', e, f),
    child: (more) => createLogger({ ...options, bound: { ...bound, ...more } }),
  };
}

/**
 * How many lines another party's frames can make this member write (a refusal each): `burst` at
 * once, then `perSecond`, for each party. A hostile member within its link's frame budget could
 * otherwise have hundreds written a second, filling the operator's disk and burying every other
 * line. The metrics still count every refusal, and a line written after some were left out says how
 * many (`suppressed`). Parties are members' authenticated keys (at most n) or one name for all
 * strangers; past `sources` the longest known is forgotten, which only refills its budget.
 */
export const PEER_LOG_LIMIT = { perSecond: 1, burst: 20, sources: 64 } as const;

/** Warnings that `source`'s frames caused, held to PEER_LOG_LIMIT for each source. */
export interface PeerLog {
  warn(source: string, event: string, fields?: Record<string, unknown>): void;
}

export function peerLog(
  log: Logger,
  limit: { perSecond: number; burst: number; sources: number } = PEER_LOG_LIMIT,
  now?: () => number,
): PeerLog {
  const budgets = new Map<string, { bucket: TokenBucket; suppressed: number }>();
  return {
    warn(source, event, fields = {}) {
      const budget = bucketOf(budgets, source, limit.sources, () => ({
        bucket: new TokenBucket(limit.perSecond, limit.burst, now),
        suppressed: 0,
      }));
      if (!budget.bucket.take()) {
        budget.suppressed++;
        return;
      }
      const { suppressed } = budget;
      budget.suppressed = 0;
      log.warn(event, suppressed > 0 ? { ...fields, suppressed } : fields);
    },
  };
}
