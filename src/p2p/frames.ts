import { newPackr } from '../msgpack.js';

/** Frame protocol version; a peer speaking another is dropped. */
export const FRAME_VERSION = 1;

export interface Frame {
  readonly v: number;
  readonly type: string;
  readonly body: unknown;
}

// structuredClone off: a frame that refers to an object twice, or to a list from inside itself, is
// malformed; accepted, a few hundred bytes could decode to a graph whose every re-encoding (a kept
// payment announced again, a stored record) doubles with each level of sharing
const packr = newPackr({
  useRecords: false,
  mapsAsObjects: true,
  int64AsType: 'bigint',
  useBigIntExtension: true,
  structuredClone: false,
});

export function encodeFrame(type: string, body: unknown): Buffer {
  return packr.pack({ v: FRAME_VERSION, type, body } satisfies Frame);
}

/**
 * Why a frame was dropped. 'queue_full': the peer's frames waiting for the handler reached their cap;
 * 'slow_peer': what waited to go to the peer reached its cap (it stopped reading), and the link with
 * all of it was dropped; 'forged': what it says is false in a way only a misbehaving member sends (a
 * finalized payment whose signatures do not verify), found by the handler (PeerNetwork.misbehaved).
 */
export type FrameFault =
  | 'malformed'
  | 'wrong_version'
  | 'unknown_type'
  | 'bad_body'
  | 'oversized'
  | 'rate_limited'
  | 'unauthenticated'
  | 'queue_full'
  | 'slow_peer'
  | 'forged';

/**
 * Decodes and checks a frame against the registered types. Returns the fault instead of
 * throwing: a peer's bytes are input, and input never throws into the event loop.
 */
export function decodeFrame(
  data: Buffer,
  validators: ReadonlyMap<string, (body: unknown) => boolean>,
): Frame | FrameFault {
  let frame: unknown;
  try {
    frame = packr.unpack(data);
  } catch {
    return 'malformed';
  }
  if (typeof frame !== 'object' || frame === null || Array.isArray(frame)) return 'malformed';
  const f = frame as Partial<Frame>;
  if (f.v !== FRAME_VERSION) return 'wrong_version';
  if (typeof f.type !== 'string') return 'malformed';
  const validate = validators.get(f.type);
  if (!validate) return 'unknown_type';
  return passes(validate, f.body) ? (f as Frame) : 'bad_body';
}

/** A body check that throws is a failed check, never a crash of the link. */
function passes(validate: (body: unknown) => boolean, body: unknown): boolean {
  try {
    return validate(body);
  } catch {
    return false;
  }
}

/** True for a Uint8Array of exactly `length` bytes: the shape check bodies use most. */
export function isBytes(value: unknown, length?: number): value is Uint8Array {
  return value instanceof Uint8Array && (length === undefined || value.length === length);
}
