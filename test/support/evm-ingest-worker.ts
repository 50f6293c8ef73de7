// Child process for the restart test: ingests the bridge's requests into a store until caught
// up. The test kills it with SIGKILL at random moments and starts it again.
import { EvmObserver } from '../../src/evm/observer.js';
import { EvmRpc } from '../../src/evm/rpc.js';
import { Store } from '../../src/storage/store.js';

const [storeDir, rpcUrl, descriptor] = process.argv.slice(2);
if (storeDir && rpcUrl && descriptor) {
  const store = await Store.open(storeDir, { descriptor });
  const observer = new EvmObserver(store, new EvmRpc(rpcUrl), {
    network: 'regtest',
    finality: { confirmations: 0 },
    startBlock: 0,
    maxRange: 1,
  });
  for (;;) {
    const report = await observer.sync();
    if (report.caughtUp) break;
  }
  await store.close();
  process.stdout.write('done\n');
}
