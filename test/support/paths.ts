import { fileURLToPath } from 'node:url';
import path from 'node:path';

/** The repository root, whether running from `test/` sources or compiled `dist/test/`. */
export const repoRoot = (() => {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const parts = here.split(path.sep);
  const distAt = parts.lastIndexOf('dist');
  return distAt >= 0 ? parts.slice(0, distAt).join(path.sep) : path.resolve(here, '..', '..');
})();

/** Consensus test vectors, kept in the repository with their provenance (test/vectors/README.md). */
export const vectorsDir = path.join(repoRoot, 'test', 'vectors');

export function vectorPath(name: string): string {
  return path.join(vectorsDir, name);
}

/** The pool worker whose signing faults (faulty-signing-worker.ts), compiled: a SigningPool's `worker`. */
export const faultySigningWorker = path.join(repoRoot, 'dist', 'test', 'support', 'faulty-signing-worker.js');

/** The pool worker that loads slowly (slow-loading-worker.ts), compiled: a SigningPool's `worker`. */
export const slowLoadingWorker = path.join(repoRoot, 'dist', 'test', 'support', 'slow-loading-worker.js');
