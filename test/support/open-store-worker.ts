/**
 * Child process of test/integration/storage/migration-crash.test.ts: opens a store, which runs
 * every migration its schema needs, then closes it. Prints `open` just before the open starts, so
 * the parent can time its SIGKILL from there, and `done` once the store is closed.
 *
 * argv: <store dir> <federation descriptor>
 */
import { Store } from '../../src/storage/store.js';

const [dir, descriptor] = process.argv.slice(2);
if (dir === undefined || descriptor === undefined) throw new Error('usage: open-store-worker <dir> <descriptor>');
process.stdout.write('open\n');
const store = await Store.open(dir, { descriptor });
await store.close();
process.stdout.write('done\n');
