import { addExtension, Packr, type Options } from 'msgpackr';

/**
 * msgpackr's own extension types that nothing here encodes: bundled strings (0x62), Error (0x65), Set
 * (0x73), typed arrays other than bytes (0x74), RegExp (0x78) and Date (0xff). Its decoder knows them in
 * every Packr of the process (their handlers are module-wide), so a peer's frame could hold them: each
 * 4 bytes of 0x65 built an Error, stack trace and all, and a frame cost a hundred times what its bytes
 * were charged. Each is refused wherever it appears: a frame holding one is malformed, a store record
 * unreadable. Bigint (0x42, what amounts travel as), undefined (0) and the structured-clone pair (0x69,
 * 0x70, which `structuredClone: false` refuses) keep their handlers.
 */
export const REFUSED_EXTENSIONS: readonly number[] = [0x62, 0x65, 0x73, 0x74, 0x78, 0xff];

let refused = false;

/** A Packr with `options`, in a process whose decoders refuse REFUSED_EXTENSIONS: the one way src/ makes one. */
export function newPackr(options: Options): Packr {
  if (!refused) {
    for (const type of REFUSED_EXTENSIONS)
      addExtension({
        type,
        unpack() {
          throw new Error(`msgpack extension type 0x${type.toString(16)} is not one this service reads`);
        },
      });
    refused = true;
  }
  return new Packr(options);
}
