import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { BitcoinObserver, recoverUtxo } from '../../../src/chain/observer.js';
import type { RpcTransaction } from '../../../src/chain/rpc.js';
import { createLogger } from '../../../src/node/log.js';
import { ReserveAuditor } from '../../../src/node/reserves.js';
import { Safety } from '../../../src/node/safety.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import type { WalletError } from '../../../src/wallet/errors.js';
import { getUtxo } from '../../../src/wallet/utxos.js';
import { cursorKey } from '../../../src/storage/keys.js';
import { scanOf, ScriptedChain } from '../../support/scripted-chain.js';
import { openTempStore } from '../../support/tempdir.js';

// An output a peer's proposal names is recovered from Bitcoin Core (coordinator.ts recoverInputs →
// member.ts recoverInput → chain/observer.ts recoverUtxo). One in a block this member has not
// applied yet was stored at the height Core gave it: a record in no applied block's undo data, so
// when that block left the chain (a one-block reorg) and the transaction was not mined again,
// nothing removed it. Once the member reached the height its books held an output Core did not, the
// audit found a mismatch and the member paused, again after each resume. Such an output is refused
// now: it would be refused as unconfirmed anyway (its depth here is not positive).

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i + 110))),
});
const FED = toHex(federation.scriptPubKey);
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');

describe('an output in a block this member has not applied yet, named by a peer', () => {
  it('is not recovered from Bitcoin Core: reorganised away, it would stay in the books and pause the member', async (t) => {
    const store = await openTempStore(t, federation.descriptor);
    const chain = new ScriptedChain(100);
    const funding: RpcTransaction = {
      txid: hex32(7),
      hash: hex32(7),
      vin: [{ coinbase: '00', sequence: 0 }],
      vout: [{ n: 0, value: 0.5, scriptPubKey: { hex: FED } }],
    };
    chain.mine([funding]);
    const observer = new BitcoinObserver({ store, chain, federationScript: federation.scriptPubKey, startHeight: 100 });
    await observer.sync();
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({ level: 'debug', write: (line) => void lines.push(JSON.parse(line)) });
    const safety = new Safety(store, log);
    const auditor = new ReserveAuditor({
      store,
      federation,
      core: { scanTxOutSet: async () => scanOf(chain, federation.scriptPubKey) },
      safety,
      log,
    });
    await auditor.tick();
    assert.equal((await auditor.report()).verdict, 'ok');

    // an outsider's deposit is mined at 102; Core has the block, this member has not applied it yet
    const deposit: RpcTransaction = {
      txid: hex32(8),
      hash: hex32(8),
      vin: [{ txid: hex32(99), vout: 0, sequence: 0 }],
      vout: [{ n: 0, value: 0.2, scriptPubKey: { hex: FED } }],
    };
    chain.mine([deposit]);
    // a (malicious) peer's proposal names it: the member recovers it from Core
    await assert.rejects(
      recoverUtxo(store, chain, federation.scriptPubKey, { txid: hex32(8), vout: 0 }),
      (err: WalletError) =>
        err.code === 'utxo_unconfirmed' && /in block 102, which this member has not applied yet/.test(err.message),
    );

    // block 102 is replaced by one without the deposit (its funding double-spent, or simply not mined again)
    chain.disconnect(1);
    chain.mine([], 'b');
    await observer.sync();
    await auditor.tick();
    const r = await auditor.report();
    assert.deepEqual(
      {
        kept: (await getUtxo(store, { txid: hex32(8), vout: 0 }))?.state ?? null,
        faults: r.faults.map((f) => f.kind),
        paused: safety.paused?.reasons.map((x) => x.kind) ?? null,
      },
      { kept: null, faults: [], paused: null },
      `member at ${r.member?.height}, assets ${r.assets.sats}, Core ${r.core.compared ? r.core.sats : '-'}`,
    );

    // an output in a block this member has applied, which it does not know (below its start height), is
    const late = await openTempStore(t, federation.descriptor);
    await late.batch().put(cursorKey('bitcoin'), { height: chain.tip, hash: chain.best[chain.tip]!.hash }).write();
    const recovered = await recoverUtxo(late, chain, federation.scriptPubKey, { txid: hex32(7), vout: 0 });
    assert.deepEqual([recovered.value, recovered.height, recovered.state], [50_000_000n, 101, 'unspent']);
  });
});
