import { ADDRESS_INDEX_TAIL, KEY_NUMBER } from '../storage/keys.js';
import type { PageRequest } from '../storage/store.js';

// What a client may look requests up by, and how each query parameter is checked: every value
// comes from outside, so each is matched against what it must be before it reaches the store.

export type LookupKind = 'evmTx' | 'evmAddress' | 'bitcoinAddress' | 'bitcoinTxid';

export interface Lookup {
  readonly kind: LookupKind;
  /** Normalized: hex lowercase; a Bitcoin address exactly as given (it is looked up as the request carried it). */
  readonly value: string;
}

interface LookupRule {
  readonly value: RegExp;
  readonly expected: string;
  readonly normalize: (value: string) => string;
  /** What a `next` cursor of this lookup looks like. */
  readonly cursor: RegExp;
}

const lower = (value: string): string => value.toLowerCase();

export const LOOKUPS: Readonly<Record<LookupKind, LookupRule>> = {
  evmTx: {
    value: /^0x[0-9a-fA-F]{64}$/,
    expected: '0x followed by 64 hex characters (an EVM transaction hash)',
    normalize: lower,
    cursor: KEY_NUMBER,
  },
  evmAddress: {
    value: /^0x[0-9a-fA-F]{40}$/,
    expected: '0x followed by 40 hex characters',
    normalize: lower,
    cursor: ADDRESS_INDEX_TAIL,
  },
  bitcoinAddress: {
    // whatever the request carried, as text; bounded so a query cannot be made arbitrarily large
    value: /^[\s\S]{1,2000}$/u,
    expected: 'the address text, 1 to 2000 characters',
    normalize: (value) => value,
    cursor: ADDRESS_INDEX_TAIL,
  },
  bitcoinTxid: {
    value: /^[0-9a-fA-F]{64}$/,
    expected: '64 hex characters (a Bitcoin txid)',
    normalize: lower,
    cursor: /^[1-9][0-9]{0,5}$/,
  },
};

const KINDS = Object.keys(LOOKUPS) as LookupKind[];

/** What pasted text is: a tx hash, an EVM address, a txid, else a Bitcoin address. */
export function classifyQuery(text: string): Lookup | undefined {
  const q = text.trim();
  if (q === '') return undefined;
  const kind = (['evmTx', 'evmAddress', 'bitcoinTxid'] as const).find((k) => LOOKUPS[k].value.test(q));
  return { kind: kind ?? 'bitcoinAddress', value: LOOKUPS[kind ?? 'bitcoinAddress'].normalize(q) };
}

export interface BadParameter {
  readonly parameter: string;
  readonly value: string | null;
  readonly expected: string;
}

export const DEFAULT_LIMIT = 20;
export const MAX_LIMIT = 100;

function parseLimit(params: URLSearchParams): number | BadParameter {
  const text = params.get('limit') ?? String(DEFAULT_LIMIT);
  const limit = Number(text);
  if (/^[0-9]+$/.test(text) && limit >= 1 && limit <= MAX_LIMIT) return limit;
  return { parameter: 'limit', value: text, expected: `an integer from 1 to ${MAX_LIMIT}` };
}

/**
 * What a lookup costs against the API's rates: the default pages its page is worth (a page of 100
 * records reads five times what one of 20 does, on the thread that signs). A limit that is not valid
 * is refused before anything is read, so it costs one.
 */
export function lookupCost(params: URLSearchParams): number {
  const limit = parseLimit(params);
  return typeof limit === 'number' ? Math.ceil(limit / DEFAULT_LIMIT) : 1;
}

/** The one lookup a query string asks for (`q` is classified), its page, or the parameter that is wrong. */
export function parseLookup(params: URLSearchParams): { lookup: Lookup; page: PageRequest } | BadParameter {
  const given = KINDS.filter((k) => params.has(k));
  const selectors = params.has('q') ? ['q', ...given] : given;
  if (selectors.length !== 1)
    return { parameter: selectors[1] ?? 'q', value: null, expected: `exactly one of q, ${KINDS.join(', ')}` };
  let lookup: Lookup | undefined;
  if (params.has('q')) lookup = classifyQuery(params.get('q')!);
  else {
    const kind = given[0]!;
    const value = params.get(kind)!;
    if (LOOKUPS[kind].value.test(value)) lookup = { kind, value: LOOKUPS[kind].normalize(value) };
    else return { parameter: kind, value, expected: LOOKUPS[kind].expected };
  }
  if (!lookup)
    return {
      parameter: 'q',
      value: params.get('q'),
      expected: 'an EVM tx hash, an EVM address, a Bitcoin address or txid',
    };
  if (!LOOKUPS[lookup.kind].value.test(lookup.value))
    return { parameter: 'q', value: params.get('q'), expected: LOOKUPS[lookup.kind].expected };
  const limit = parseLimit(params);
  if (typeof limit !== 'number') return limit;
  const cursor = params.get('cursor') ?? undefined;
  if (cursor !== undefined && !LOOKUPS[lookup.kind].cursor.test(cursor))
    return { parameter: 'cursor', value: cursor, expected: 'the `next` value of the previous page' };
  return { lookup, page: { limit, cursor } };
}
