import { appendFileSync } from 'node:fs';

// A pool worker that takes its time to load, as any does on a busy machine: the real worker, loaded
// after a pause. When it has loaded it appends a line to the file SLOW_WORKER_LOADED names, so a
// test can tell whether a pool let each of its workers finish loading.

await new Promise((resolve) => setTimeout(resolve, 300));
const { default: run, loaded } = await import('../../src/signing/worker.js');
appendFileSync(process.env.SLOW_WORKER_LOADED!, 'loaded\n');
export default run;
export { loaded };
