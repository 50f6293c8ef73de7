import type { Aux } from '../../src/signing/args.js';
import { fallbackBackend } from '../../src/signing/fallback.js';

// A pool worker whose signing faults: a bit of the first signature of every batch flips after it
// was computed, as a glitch in memory would leave it. It is the real worker, over the fallback
// backend (the pool starts it with backend 'js') patched in this thread before the worker picks it.

const sign = fallbackBackend.signBatch.bind(fallbackBackend);
fallbackBackend.signBatch = (secretKey: Uint8Array, messages: Uint8Array, aux: Aux): Uint8Array => {
  const signatures = sign(secretKey, messages, aux);
  signatures[9]! ^= 0x10;
  return signatures;
};

const { default: run, loaded } = await import('../../src/signing/worker.js');
export default run;
export { loaded };
