import { schnorr, secp256k1 } from '@noble/curves/secp256k1.js';
import { ByteWriter, compare, fromHexLength, toHex } from './bytes.js';
import { withChecksum } from './descriptor.js';
import { BitcoinError } from './errors.js';
import { taggedHash } from './hash.js';
import { encodeAddress } from './address.js';
import { parseNetwork, type Network } from './network.js';
import { OP_CHECKSIG, OP_CHECKSIGADD, OP_NUMEQUAL, pushNumber, witnessScript } from './script.js';

/** BIP341's provably unspendable internal key H: the federation has no key path. */
export const NUMS_INTERNAL_KEY = fromHexLength(
  '50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0',
  32,
  'NUMS key',
);
export const TAPSCRIPT_LEAF_VERSION = 0xc0;
/** Bitcoin Core's limit for multi_a / sortedmulti_a. */
export const MAX_FEDERATION_MEMBERS = 999;

export interface FederationParams {
  readonly network: Network;
  readonly threshold: number;
  /** x-only member keys, any order. */
  readonly pubkeys: readonly Uint8Array[];
}

export interface Federation extends FederationParams {
  /** Sorted ascending, as sortedmulti_a sorts them; witness items follow this order reversed. */
  readonly pubkeys: readonly Uint8Array[];
  /** The keys in the order they were configured: the descriptor lists them so. */
  readonly configuredPubkeys: readonly Uint8Array[];
  readonly tapscript: Uint8Array;
  readonly leafHash: Uint8Array;
  readonly outputKey: Uint8Array;
  readonly outputKeyParity: 0 | 1;
  readonly scriptPubKey: Uint8Array;
  readonly address: string;
  readonly controlBlock: Uint8Array;
  readonly descriptor: string;
}

/** The default threshold: more than two thirds of the members. */
export function defaultThreshold(members: number): number {
  return Math.floor((2 * members) / 3) + 1;
}

/** What a federation of `members` needing `threshold` signatures survives (SPEC §3). */
export interface FaultTolerance {
  /**
   * f = 2t − n − 1: malicious members under which no request is paid twice. Any two quorums of
   * t share at least 2t − n members, so with at most f malicious one of them is honest, and an
   * honest member signs one live payment per request. Negative when two quorums need not share
   * a member at all: then not even one malicious member is tolerated.
   */
  readonly safety: number;
  /** n − t: members that may be down (or refuse to sign) while every request is still paid. */
  readonly liveness: number;
}

export function faultTolerance(threshold: number, members: number): FaultTolerance {
  if (!Number.isInteger(members) || members < 1 || members > MAX_FEDERATION_MEMBERS) {
    const details = { field: 'members', value: members };
    fail(`members must be an integer from 1 to ${MAX_FEDERATION_MEMBERS}, got ${members}`, details);
  }
  if (!Number.isInteger(threshold) || threshold < 1 || threshold > members) {
    const details = { field: 'threshold', value: threshold };
    fail(`threshold must be an integer from 1 to the number of members (${members}), got ${threshold}`, details);
  }
  return { safety: 2 * threshold - members - 1, liveness: members - threshold };
}

/** faultTolerance() in words, for operators; says so plainly when no malicious member is tolerated. */
export function faultToleranceStatement(threshold: number, members: number): string {
  const { safety: f, liveness } = faultTolerance(threshold, members);
  const head = `${threshold}-of-${members}`;
  const down = `payments go on with up to ${liveness} member(s) down (n − t = ${liveness})`;
  if (f > 0) {
    return `${head}: up to ${f} malicious member(s) cannot get a request paid twice (f = 2t − n − 1 = ${f}); ${down}`;
  }
  if (f === 0) {
    return (
      `${head}: tolerates NO malicious member (f = 2t − n − 1 = 0): any two quorums share one member, ` +
      `so honest members never pay a request twice, but one malicious member could; ${down}`
    );
  }
  // the smallest t with 2t − n − 1 ≥ 0, which SPEC §3 requires
  const least = Math.ceil((members + 1) / 2);
  return (
    `${head}: tolerates NO malicious member (f = 2t − n − 1 = ${f} < 0): two quorums need not share a member, ` +
    `so even honest members in two rounds could pay a request twice; a threshold of at least ${least} is needed; ${down}`
  );
}

/** The numbers and the statement, as /federation, `pegout federation` and the member's start-up log show them. */
export function federationFaultTolerance(
  federation: FederationParams,
): FaultTolerance & { readonly statement: string } {
  const {
    threshold,
    pubkeys: { length: members },
  } = federation;
  return { ...faultTolerance(threshold, members), statement: faultToleranceStatement(threshold, members) };
}

function fail(message: string, details: Record<string, unknown>): never {
  throw new BitcoinError('invalid_federation', message, details);
}

/** Checks the parameters and returns the member keys sorted ascending. */
function checkParams(params: FederationParams): Uint8Array[] {
  const n = params.pubkeys.length;
  if (n === 0) fail('federation needs at least one member key (pubkeys is empty)', { field: 'pubkeys' });
  if (n > MAX_FEDERATION_MEMBERS)
    fail(`federation has ${n} member keys; at most ${MAX_FEDERATION_MEMBERS} are allowed`, {
      field: 'pubkeys',
      value: n,
    });
  if (!Number.isInteger(params.threshold) || params.threshold < 1 || params.threshold > n) {
    fail(`threshold must be an integer from 1 to the number of members (${n}), got ${params.threshold}`, {
      field: 'threshold',
      value: params.threshold,
    });
  }
  const sorted = params.pubkeys
    .map((key, i) => {
      if (!(key instanceof Uint8Array) || key.length !== 32)
        fail(`pubkeys[${i}] must be a 32-byte x-only public key`, { field: `pubkeys[${i}]` });
      try {
        schnorr.utils.lift_x(BigInt(`0x${toHex(key)}`));
      } catch {
        fail(`pubkeys[${i}] ${toHex(key)} is not the x coordinate of a point on secp256k1`, {
          field: `pubkeys[${i}]`,
          value: toHex(key),
        });
      }
      return key;
    })
    .sort(compare);
  for (let i = 1; i < sorted.length; i++) {
    if (compare(sorted[i - 1]!, sorted[i]!) === 0)
      fail(`member key ${toHex(sorted[i]!)} appears twice`, { field: 'pubkeys', value: toHex(sorted[i]!) });
  }
  return sorted;
}

/** `<pk1> OP_CHECKSIG <pk2> OP_CHECKSIGADD … <pkn> OP_CHECKSIGADD <t> OP_NUMEQUAL`, keys as given. */
export function multiATapscript(sortedKeys: readonly Uint8Array[], threshold: number): Uint8Array {
  const w = new ByteWriter(sortedKeys.length * 34 + 4);
  sortedKeys.forEach((key, i) =>
    w
      .u8(32)
      .bytes(key)
      .u8(i === 0 ? OP_CHECKSIG : OP_CHECKSIGADD),
  );
  return w.bytes(pushNumber(threshold)).u8(OP_NUMEQUAL).finish();
}

export function tapLeafHash(script: Uint8Array): Uint8Array {
  return taggedHash('TapLeaf', new ByteWriter(script.length + 4).u8(TAPSCRIPT_LEAF_VERSION).varBytes(script).finish());
}

/** BIP341 output key Q = P + H(P || merkle root)·G for internal key P (x-only). */
export function tweakOutputKey(
  internalKey: Uint8Array,
  merkleRoot: Uint8Array,
): { outputKey: Uint8Array; parity: 0 | 1 } {
  const tweak = BigInt(`0x${toHex(taggedHash('TapTweak', internalKey, merkleRoot))}`);
  if (tweak >= secp256k1.Point.Fn.ORDER) fail('taproot tweak is not below the curve order', {});
  const P = schnorr.utils.lift_x(BigInt(`0x${toHex(internalKey)}`));
  const Q = P.add(secp256k1.Point.BASE.multiply(tweak));
  const compressed = Q.toBytes(true);
  return { outputKey: compressed.slice(1), parity: compressed[0] === 0x03 ? 1 : 0 };
}

/** Everything a member, a wallet or an auditor derives from (keys, t, network). */
export function buildFederation(params: FederationParams): Federation {
  const pubkeys = checkParams(params);
  const tapscript = multiATapscript(pubkeys, params.threshold);
  const leafHash = tapLeafHash(tapscript);
  // One leaf: the merkle root is the leaf hash, and the control block has no path.
  const { outputKey, parity } = tweakOutputKey(NUMS_INTERNAL_KEY, leafHash);
  const scriptPubKey = witnessScript(1, outputKey);
  const controlBlock = new Uint8Array(33);
  controlBlock[0] = TAPSCRIPT_LEAF_VERSION | parity;
  controlBlock.set(NUMS_INTERNAL_KEY, 1);
  const descriptor = withChecksum(
    `tr(${toHex(NUMS_INTERNAL_KEY)},sortedmulti_a(${params.threshold},${params.pubkeys.map(toHex).join(',')}))`,
  );
  return {
    network: params.network,
    threshold: params.threshold,
    pubkeys,
    configuredPubkeys: [...params.pubkeys],
    tapscript,
    leafHash,
    outputKey,
    outputKeyParity: parity,
    scriptPubKey,
    address: encodeAddress(scriptPubKey, params.network),
    controlBlock,
    descriptor,
  };
}

/** Position of a member in the sorted key list, or -1 for a non-member. */
export function memberIndex(federation: Federation, pubkey: Uint8Array): number {
  return federation.pubkeys.findIndex((k) => compare(k, pubkey) === 0);
}

/** The federation file `{network, threshold, pubkeys}` every command and the node accept. */
export interface FederationFile {
  readonly network: Network;
  readonly threshold: number;
  readonly pubkeys: readonly string[];
}

export function parseFederationFile(json: unknown, source: string): Federation {
  const f = json as Partial<Record<keyof FederationFile, unknown>> | null;
  if (!f || typeof f !== 'object')
    fail(`${source} must be a JSON object {network, threshold, pubkeys}`, { field: source });
  // no coercion: String() would read ["regtest"] as "regtest"
  if (typeof f.network !== 'string')
    fail(`${source}: network must be a JSON string, got ${JSON.stringify(f.network)}`, {
      field: 'network',
      value: f.network,
    });
  const network = parseNetwork(f.network, `${source}: network`);
  if (!Array.isArray(f.pubkeys) || !f.pubkeys.every((k) => typeof k === 'string'))
    fail(`${source}: pubkeys must be an array of 64-hex x-only keys`, { field: 'pubkeys' });
  const pubkeys = (f.pubkeys as string[]).map((k, i) => fromHexLength(k, 32, `${source}: pubkeys[${i}]`));
  // no coercion: Number() would read true as 1 and "0x3" or [3] as 3, a threshold the file does not state
  if (typeof f.threshold !== 'number' || !Number.isInteger(f.threshold))
    fail(`${source}: threshold must be a JSON integer, got ${JSON.stringify(f.threshold)}`, {
      field: 'threshold',
      value: f.threshold,
    });
  try {
    return buildFederation({ network, threshold: f.threshold, pubkeys });
  } catch (err) {
    // a rotation plan reads two federation files: the fault must say which
    if (!(err instanceof BitcoinError)) throw err;
    throw new BitcoinError(err.code, `${source}: ${err.message}`, { ...err.details, source }, { cause: err });
  }
}

export function federationFile(federation: Federation): FederationFile {
  return {
    network: federation.network,
    threshold: federation.threshold,
    pubkeys: federation.configuredPubkeys.map(toHex),
  };
}
