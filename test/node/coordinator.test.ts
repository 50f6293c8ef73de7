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
import { buildPayments } from '../../src/wallet/payment.js';
import { proposalFromPayment } from '../../src/wallet/proposal.js';
import { listUtxos, registerUtxo, type UtxoRecord } from '../../src/wallet/utxos.js';
import { signProposal } from '../../src/node/signer.js';
import type { TestContext } from 'node:test';
import type { Federation } from '../../src/bitcoin/federation.js';
import { openTempStore } from '../support/tempdir.js';

const hex32 = (n: number): string => n.toString(16).padStart(64, '0');

interface Member {
  readonly store: Store;
  readonly pool: SigningPool;
  readonly network: PeerNetwork;
  readonly coordinator: Coordinator;
}

interface Setup {
  readonly members: number;
  readonly threshold: number;
  readonly requests: number;
  readonly utxos: readonly bigint[];
  /** Runs on each member's store and pool before its coordinator starts. */
  readonly before?: (i: number, store: Store, pool: SigningPool, federation: Federation) => Promise<void>;
}

const FEES = { minFeeRate: 1, maxFeeRate: 100 };
const requestId = (r: number): string => `0x${hex32(1000 + r)}:0`;

/** n members in this process, each with its store, pool, links on loopback and coordinator, holding the same requests and federation outputs. */
async function startMembers(t: TestContext, setup: Setup, lines: string[]): Promise<{ federation: Federation; members: Member[] }> {
  const secretKeys = Array.from({ length: setup.members }, (_, i) => Buffer.alloc(32, i + 41));
  const keys = secretKeys.map((k) => schnorrBackend().xonlyPublicKey(k));
  const federation = buildFederation({ network: 'regtest', threshold: setup.threshold, pubkeys: keys });
  const ports = await Promise.all(keys.map(() => freePort()));
  const members = await Promise.all(
    secretKeys.map(async (secretKey, i) => {
      const store = await openTempStore(t, federation.descriptor);
      const batch = store.batch();
      for (let r = 0; r < setup.requests; r++) {
        const txHash = `0x${hex32(1000 + r)}`;
        stageNewRequest(batch, { id: requestId(r), txHash, logIndex: 0, blockNumber: 10, blockHash: `0x${hex32(10)}`, evmAddress: `0x${'22'.repeat(20)}`, bitcoinAddress: 'x', wei: '0', sats: BigInt(1_000_000 + r * 1000), subSatoshiWei: '0', status: 'accepted', scriptPubKey: witnessScript(0, new Uint8Array(20).fill(r + 1)) }, 'then');
      }
      for (const [u, value] of setup.utxos.entries()) await registerUtxo(batch, { txid: hex32(500 + u), vout: 0, value, scriptPubKey: federation.scriptPubKey, height: 0 });
      await batch.write({ sync: true });
      const pool = new SigningPool(federation, { secretKey, size: 1 });
      await setup.before?.(i, store, pool, federation);
      const peers = new Map(keys.flatMap((k, j) => (j === i ? [] : [[toHex(k), `wss://127.0.0.1:${ports[j]}`] as [string, string]])));
      const network = new PeerNetwork({ secretKey, members: keys, listen: { host: '127.0.0.1', port: ports[i]! }, peers, limits: { reconnectMinMs: 50, reconnectMaxMs: 300 } });
      const log = createLogger({ level: 'info', write: (l) => lines.push(l), bound: { member: i } });
      const coordinator = new Coordinator({ store, federation, pool, network, fees: { ...FEES, rate: async () => 2 }, maxOutputs: 5, slotMs: 150, log, onFinalized: (record) => settleLocally(store, federation, record) });
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
  return { federation, members };
}

async function waitAllSigned(members: readonly Member[], lines: readonly string[]): Promise<void> {
  const signedEverywhere = async (): Promise<boolean> => {
    for (const m of members) if ((await listRequests(m.store, (r) => r.status !== 'signed')).length > 0) return false;
    return true;
  };
  const deadline = Date.now() + 30_000;
  while (!(await signedEverywhere())) {
    assert.ok(Date.now() < deadline, `not all requests signed in time; logs:\n${lines.join('')}`);
    await sleep(100);
  }
}

async function finals(store: Store): Promise<FinalizedRecord[]> {
  const out: FinalizedRecord[] = [];
  for await (const [, f] of store.entries<FinalizedRecord>({ prefix: SPACES.finalized })) out.push(f);
  return out;
}

describe('transaction coordinator, members in one process on loopback', () => {
  it('turns every request into exactly one finalized payment, signed by t members', async (t) => {
    const requestCount = 12;
    const lines: string[] = [];
    const { federation, members } = await startMembers(t, { members: 3, threshold: 2, requests: requestCount, utxos: Array<bigint>(6).fill(5_000_000n) }, lines);
    await waitAllSigned(members, lines);

    // every member holds the same finalized payments, each request paid exactly once
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

  it('unblocks rival payments of the same requests whose signers split, and frees every input the losers held', async (t) => {
    // 3-of-4: members 0 and 1 signed one payment, members 2 and 3 another from other inputs;
    // each refuses the other's (they do not conflict), so neither can reach three signatures
    const lines: string[] = [];
    const requests = [0, 1, 2, 3].map((r) => ({ id: requestId(r), scriptPubKey: witnessScript(0, new Uint8Array(20).fill(r + 1)), sats: BigInt(1_000_000 + r * 1000) }));
    const rivalOf: string[] = [];
    const { members } = await startMembers(
      t,
      {
        members: 4,
        threshold: 3,
        requests: 4,
        utxos: Array<bigint>(6).fill(2_500_000n),
        before: async (i, store, pool, federation) => {
          const spendable = (await listUtxos(store, 'unspent')).slice(i < 2 ? 0 : 2, i < 2 ? 2 : 4);
          const [payment] = buildPayments(requests, spendable, 2, federation, { maxOutputs: 5 }).payments;
          const proposal = proposalFromPayment(payment!, 0, 'rival');
          const outcome = await signProposal(store, pool, federation, proposal, FEES);
          assert.ok(outcome.ok, JSON.stringify(outcome));
          assert.equal(payment!.prevouts.length, 2);
          if (outcome.ok) rivalOf[i] = outcome.txid;
        },
      },
      lines,
    );
    assert.equal(new Set(rivalOf).size, 2);
    await waitAllSigned(members, lines);
    assert.ok(lines.some((l) => l.includes('"merging"')), 'a proposer merged the rivals');

    for (const [i, m] of members.entries()) {
      const [final, ...others] = await finals(m.store);
      assert.equal(others.length, 0, 'one finalized payment');
      assert.deepEqual([...final!.requestIds].sort(), requests.map((r) => r.id).sort());
      assert.deepEqual(final!.conflicts, [rivalOf[i]], 'the rival this member signed loses to it');
      assert.deepEqual(await listUtxos(m.store, 'reserved'), [] as UtxoRecord[], 'no input stays reserved by a losing payment');
      assert.equal((await listUtxos(m.store, 'spent')).length, parseTx(final!.tx).inputs.length);
    }
  });
});
