import { bech32, bech32m, createBase58check } from '@scure/base';
import { BitcoinError } from './errors.js';
import { sha256 } from './hash.js';
import { NETWORK_NAMES, NETWORKS, type Network } from './network.js';
import { classifyScript, p2pkhScript, p2shScript, witnessProgram, witnessScript, type ScriptType } from './script.js';

const base58check = createBase58check(sha256);
const BECH32_MAX_LENGTH = 90;
/** The checksums to try, in order, for a witness version 0 address and for any later version (BIP350). */
const V0_FIRST = [bech32, bech32m] as const;
const V1_FIRST = [bech32m, bech32] as const;

export interface DecodedAddress {
  readonly type: Exclude<ScriptType, 'nonstandard'>;
  readonly scriptPubKey: Uint8Array;
}

function invalid(text: string, reason: string): BitcoinError {
  return new BitcoinError('invalid_address', `${JSON.stringify(text)} is not a valid Bitcoin address: ${reason}`, {
    address: text,
    reason,
  });
}

function decodeBase58(text: string, network: Network): DecodedAddress {
  let payload: Uint8Array;
  try {
    payload = base58check.decode(text);
  } catch (err) {
    throw invalid(text, `base58check: ${(err as Error).message}`);
  }
  if (payload.length !== 21) throw invalid(text, `base58 payload is ${payload.length} bytes, expected 21`);
  const params = NETWORKS[network];
  const hash = payload.subarray(1);
  if (payload[0] === params.p2pkh) return { type: 'p2pkh', scriptPubKey: p2pkhScript(hash) };
  if (payload[0] === params.p2sh) return { type: 'p2sh', scriptPubKey: p2shScript(hash) };
  throw invalid(text, `base58 version byte ${payload[0]} is not P2PKH or P2SH for ${network}`);
}

function decodeSegwit(text: string, network: Network): DecodedAddress {
  const hrp = NETWORKS[network].bech32;
  // Both decoders check the charset, the checksum, the length limit and reject mixed case. The
  // first data character is the witness version (q: 0) and BIP350 gives each version its checksum,
  // so the one it calls for goes first: a decoder that fails throws and catches an error inside
  // @scure/base, which costs more than the decoding (a taproot request's decision: 18 µs → 4).
  const [expected, other] = text.charAt(text.lastIndexOf('1') + 1).toLowerCase() === 'q' ? V0_FIRST : V1_FIRST;
  const first = expected.decodeUnsafe(text, BECH32_MAX_LENGTH);
  const decoded = first ?? other.decodeUnsafe(text, BECH32_MAX_LENGTH);
  if (!decoded) throw invalid(text, 'bech32/bech32m checksum or format is wrong');
  const asBech32 = (first ? expected : other) === bech32;
  if (decoded.prefix !== hrp)
    throw invalid(
      text,
      `human-readable part ${JSON.stringify(decoded.prefix)} is not ${JSON.stringify(hrp)} (${network})`,
    );
  const [version, ...data] = decoded.words;
  if (version === undefined) throw invalid(text, 'no witness version');
  if (version > 16) throw invalid(text, `witness version ${version} is above 16`);
  // BIP350: version 0 uses bech32, every later version bech32m.
  if (version === 0 && !asBech32) throw invalid(text, 'witness version 0 must use bech32, not bech32m');
  if (version !== 0 && asBech32) throw invalid(text, `witness version ${version} must use bech32m, not bech32`);
  const program = bech32.fromWordsUnsafe(data);
  if (!program) throw invalid(text, 'witness program has invalid padding');
  if (program.length < 2 || program.length > 40)
    throw invalid(text, `witness program is ${program.length} bytes, expected 2 to 40`);
  if (version === 0 && program.length !== 20 && program.length !== 32)
    throw invalid(text, `witness v0 program is ${program.length} bytes, expected 20 or 32`);
  const scriptPubKey = witnessScript(version, Uint8Array.from(program));
  return { type: classifyScript(scriptPubKey) as DecodedAddress['type'], scriptPubKey };
}

function decodeFor(text: string, network: Network): DecodedAddress {
  const hrp = NETWORKS[network].bech32;
  const looksSegwit = text.toLowerCase().startsWith(`${hrp}1`);
  return looksSegwit ? decodeSegwit(text, network) : decodeBase58(text, network);
}

/**
 * Decodes an address as Bitcoin Core does for `network`. Throws `wrong_network` when the text
 * is a valid address of another network (the caller can tell the user which), otherwise
 * `invalid_address` with the reason.
 */
export function decodeAddress(text: string, network: Network): DecodedAddress {
  if (typeof text !== 'string' || text.length === 0) throw invalid(String(text), 'empty');
  try {
    return decodeFor(text, network);
  } catch (err) {
    for (const other of NETWORK_NAMES) {
      if (other === network) continue;
      try {
        decodeFor(text, other);
      } catch {
        continue;
      }
      throw new BitcoinError(
        'wrong_network',
        `${JSON.stringify(text)} is a ${other} address, not a ${network} address`,
        { address: text, network, addressNetwork: other },
      );
    }
    throw err;
  }
}

/** The address of a scriptPubKey on `network`; throws for scripts that have none. */
export function encodeAddress(scriptPubKey: Uint8Array, network: Network): string {
  const params = NETWORKS[network];
  const type = classifyScript(scriptPubKey);
  if (type === 'p2pkh') return base58check.encode(Uint8Array.of(params.p2pkh, ...scriptPubKey.subarray(3, 23)));
  if (type === 'p2sh') return base58check.encode(Uint8Array.of(params.p2sh, ...scriptPubKey.subarray(2, 22)));
  const wp = witnessProgram(scriptPubKey);
  if (!wp || type === 'nonstandard') throw new BitcoinError('invalid_script', 'script has no address form');
  const words = [wp.version, ...bech32.toWords(wp.program)];
  return (wp.version === 0 ? bech32 : bech32m).encode(params.bech32, words, BECH32_MAX_LENGTH);
}
