import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { toHex } from '../../src/bitcoin/bytes.js';
import { buildFederation } from '../../src/bitcoin/federation.js';
import { witnessScript } from '../../src/bitcoin/script.js';
import { parseTx } from '../../src/bitcoin/tx.js';
import { freePort } from '../../src/evm/anvil.js';
import { listRequests, stageNewRequest } from '../../src/evm/request-store.js';
import { Coordinator, type FinalizedRecord } from '../../src/node/coordinator.js';
import { settleLocally } from '../../src/node/settlement.js';
import { createLogger } from '../../src/node/log.js';
import { PeerNetwork } from '../../src/p2p/network.js';
import { checkFinalizedWitnesses } from '../../src/signing/collector.js';
import { SigningPool } from '../../src/signing/pool.js';
import { schnorrBackend } from '../../src/signing/schnorr.js';
import { SPACES } from '../../src/storage/keys.js';
import type { Store } from '../../src/storage/store.js';
import { registerUtxo } from '../../src/wallet/utxos.js';
import { openTempStore } from '../support/tempdir.js';

const hex32 = (n: number): string => n.toString(16).padStart(64, '0');

describe('transaction coordinator, three members in one process on loopback', () => {
  it('turns every request into exactly one finalized payment, signed by t members', async (t) => {
    const secretKeys = [1, 2, 3].map((i) => Buffer.alloc(32, i + 40));
    const keys = secretKeys.map((k) => schnorrBackend().xonlyPublicKey(k));
    const federation = buildFederation({ network: 'regtest', threshold: 2, pubkeys: keys });
    const ports = await Promise.all(keys.map(() => freePort()));
    const requestCount = 12;
    const lines: string[] = [];

    const members = await Promise.all(
      secretKeys.map(async (secretKey, i) => {
        const store = await openTempStore(t, federation.descriptor);
        const batch = store.batch();
        for (let r = 0; r < requestCount; r++) {
          const txHash = `0x${hex32(1000 + r)}`;
          stageNewRequest(batch, { id: `${txHash}:0`, txHash, logIndex: 0, blockNumber: 10, blockHash: `0x${hex32(10)}`, evmAddress: `0x${'22'.repeat(20)}`, bitcoinAddress: 'x', wei: '0', sats: BigInt(1_000_000 + r * 1000), subSatoshiWei: '0', status: 'accepted', scriptPubKey: witnessScript(0, new Uint8Array(20).fill(r + 1)) }, 'then');
        }
        for (let u = 0; u < 6; u++) await registerUtxo(batch, { txid: hex32(500 + u), vout: 0, value: 5_000_000n, scriptPubKey: federation.scriptPubKey, height: 0 });
        await batch.write({ sync: true });
        const pool = new SigningPool(federation, { secretKey, size: 1 });
        const peers = new Map(keys.flatMap((k, j) => (j === i ? [] : [[toHex(k), `ws://127.0.0.1:${ports[j]}`] as [string, string]])));
        const network = new PeerNetwork({ secretKey, members: keys, listen: { host: '127.0.0.1', port: ports[i]! }, peers, limits: { reconnectMinMs: 50, reconnectMaxMs: 300 } });
        const log = createLogger({ level: 'warn', write: (l) => lines.push(l), bound: { member: i } });
        const coordinator = new Coordinator({ store, federation, pool, network, fees: { minFeeRate: 1, maxFeeRate: 100, rate: async () => 2 }, maxOutputs: 5, slotMs: 150, log, onFinalized: (record) => settleLocally(store, federation, record) });
        return { store, pool, network, coordinator };
      }),
    );
    t.after(async () => {
      for (const m of members) {
        await m.coordinator.stop();
        await m.network.stop();
        await m.pool.destroy();
      }
    });
    for (const m of members) {
      await m.network.start();
      await m.coordinator.start();
    }

    const signedEverywhere = async (): Promise<boolean> => {
      for (const m of members) if ((await listRequests(m.store, (r) => r.status !== 'signed')).length > 0) return false;
      return true;
    };
    const deadline = Date.now() + 30_000;
    while (!(await signedEverywhere())) {
      assert.ok(Date.now() < deadline, `not all requests signed in time; logs:\n${lines.join('')}`);
      await sleep(100);
    }

    // every member holds the same finalized payments, each request paid exactly once
    const finals = async (store: Store): Promise<FinalizedRecord[]> => {
      const out: FinalizedRecord[] = [];
      for await (const [, f] of store.entries<FinalizedRecord>({ prefix: SPACES.finalized })) out.push(f);
      return out;
    };
    const sets = await Promise.all(members.map((m) => finals(m.store)));
    const ids = sets.map((s) => s.map((f) => f.txid).sort());
    assert.deepEqual(ids[1], ids[0]);
    assert.deepEqual(ids[2], ids[0]);
    const paid = sets[0]!.flatMap((f) => f.requestIds);
    assert.equal(paid.length, requestCount);
    assert.equal(new Set(paid).size, requestCount, 'no request paid twice');
    const spent = new Set<string>();
    for (const f of sets[0]!) {
      const tx = parseTx(f.tx);
      for (const i of tx.inputs) {
        assert.ok(!spent.has(`${i.txid}:${i.vout}`), 'no output spent by two payments');
        spent.add(`${i.txid}:${i.vout}`);
      }
      assert.equal(tx.inputs[0]!.witness.filter((w) => w.length === 64).length, 2);
    }
    for (const f of sets[0]!) checkFinalizedWitnesses(parseTx(f.tx), f.prevouts, federation);
  });
});
