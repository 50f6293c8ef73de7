import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { parseTx, serializeTx, txid as txidOf } from '../../../src/bitcoin/tx.js';
import { parseRequestId } from '../../../src/evm/request-id.js';
import { getRequest, stageNewRequest } from '../../../src/evm/request-store.js';
import { recordFinalized } from '../../../src/node/finalize.js';
import { signProposal } from '../../../src/node/signer.js';
import { inProcessVerifier } from '../../../src/signing/collector.js';
import { SigningPool } from '../../../src/signing/pool.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { holdKey, outflowKey, signatureMadeKey } from '../../../src/storage/keys.js';
import { pauseOnSignFault, Safety } from '../../../src/node/safety.js';
import { createLogger } from '../../../src/node/log.js';
import type { Store } from '../../../src/storage/store.js';
import { buildPayments, requirePayments, type SpendableUtxo } from '../../../src/wallet/payment.js';
import { checkProposal, proposalFromPayment } from '../../../src/wallet/proposal.js';
import { TEST_POLICY } from '../../support/policy.js';
import { DEFAULT_LIMITS } from '../../../src/wallet/limits.js';
import { getUtxo, registerUtxo } from '../../../src/wallet/utxos.js';
import { faultySigningWorker } from '../../support/paths.js';
import { openTempStore } from '../../support/tempdir.js';
import { testRequest } from '../../support/requests.js';
import type { Proposal, SignatureRecord } from '../../../src/storage/records.js';

const secretKeys = [1, 2, 3].map((i) => Buffer.alloc(32, i));
const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: secretKeys.map((k) => schnorrBackend().xonlyPublicKey(k)),
});
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');
/** Whose link brought the proposals these tests sign: the member that proposes them. */
const PROPOSER = toHex(federation.pubkeys[0]!);
const pool = new SigningPool(federation, { secretKey: secretKeys[0]!, size: 1 });
after(() => pool.destroy());

const requestIds = [1, 2].map((i) => `0x${hex32(i)}:${i}`);
const utxos: SpendableUtxo[] = [1, 2, 3].map((i) => ({
  txid: hex32(100 + i),
  vout: 0,
  value: 10_000_000n,
  scriptPubKey: federation.scriptPubKey,
}));

async function seed(store: Store): Promise<void> {
  const batch = store.batch();
  for (const [i, id] of requestIds.entries()) {
    stageNewRequest(
      batch,
      testRequest({
        ...parseRequestId(id),
        blockNumber: 5,
        sats: 3_000_000n,
        scriptPubKey: witnessScript(0, new Uint8Array(20).fill(i + 1)),
      }),
      'then',
    );
  }
  for (const u of utxos) await registerUtxo(batch, { ...u, height: 1, pegIn: true });
  await batch.write({ sync: true });
}

function proposalFor(available: SpendableUtxo[], rate = 2): Proposal {
  const requests = requestIds.map((id, i) => ({
    id,
    scriptPubKey: witnessScript(0, new Uint8Array(20).fill(i + 1)),
    sats: 3_000_000n,
  }));
  const [payment] = requirePayments(buildPayments(requests, available, rate, federation, { maxOutputs: 10 }), 2);
  return proposalFromPayment(payment!, 1, toHex(federation.pubkeys[0]!));
}

describe('transaction signer', () => {
  it('refuses a hostile proposal that breaks its own limits, and signs nothing while paused', async (t) => {
    const store = await openTempStore(t);
    await seed(store);
    const checked = checkProposal(proposalFor(utxos));
    const self = toHex(schnorrBackend().xonlyPublicKey(secretKeys[0]!));
    const limits = { maxRequestSats: 2_000_000n, windowSats: 10_000_000n, windowBlocks: 144 };
    const policy = { ...TEST_POLICY, self, limits };
    const reason = async (p = policy) => {
      const o = await signProposal(store, pool, federation, checked, p, PROPOSER);
      return o.ok ? 'ok' : o.reason;
    };
    // both requests (3,000,000 sats each) are over the per-request limit: held until this operator releases them
    assert.equal(await reason(), 'request_held');
    for (const id of requestIds) {
      const [txHash, ordinal] = id.split(':');
      await store
        .batch()
        .put(holdKey(txHash!, Number(ordinal), self), { at: 'then' })
        .write();
    }
    // released, but the window already let 9,000,000 of its 10,000,000 leave: 6,000,000 more do not fit
    const tight = { ...policy, limits: { ...limits, maxRequestSats: 5_000_000n } };
    await store.batch().put(outflowKey(0), 4_000_001n).write();
    assert.equal(await reason(tight), 'rate_limited');
    await new Safety(store, createLogger({ write: () => undefined })).pause({ kind: 'operator', detail: 'test' });
    assert.equal(await reason(policy), 'paused');
    const safety = new Safety(store, createLogger({ write: () => undefined }));
    await safety.load();
    await safety.resume();
    assert.equal(await reason(policy), 'ok', 'released by this operator: signed');
    // the window counts requests first signed in it
    assert.equal(await store.get(outflowKey(0)), 4_000_001n + 6_000_000n);
  });

  it(
    'a signature that fails its own check pauses the member: nothing recorded or returned, nothing signed after',
    { timeout: 10_000 },
    async (t) => {
      const store = await openTempStore(t);
      await seed(store);
      const log = createLogger({ write: () => undefined });
      const safety = new Safety(store, log);
      const paused = new Promise<void>((resolve) => safety.onChange((p) => p && resolve()));
      // the member's own wiring (pauseOnSignFault) on a worker whose signing faults
      const faulty = new SigningPool(federation, {
        secretKey: secretKeys[0]!,
        size: 1,
        backend: 'js',
        worker: faultySigningWorker,
        onSignFault: pauseOnSignFault(safety, log),
      });
      t.after(() => faulty.destroy());
      const checked = checkProposal(proposalFor(utxos));
      await assert.rejects(signProposal(store, faulty, federation, checked, TEST_POLICY, PROPOSER), {
        code: 'sign_fault',
      });
      assert.equal(
        await store.get(signatureMadeKey(checked.txid)),
        undefined,
        'no record of a signature that never left',
      );
      for (const id of requestIds) assert.equal((await getRequest(store, id))?.status, 'accepted');
      await paused;
      assert.deepEqual(
        safety.paused?.reasons.map((r) => r.kind),
        ['sign_fault'],
      );
      // stored: a restart stays paused, and a sound pool is refused too until an operator resumes
      const restarted = new Safety(store, log);
      await restarted.load();
      assert.notEqual(restarted.paused, null);
      const outcome = await signProposal(store, pool, federation, checked, TEST_POLICY, PROPOSER);
      assert.equal(outcome.ok ? 'ok' : outcome.reason, 'paused');
    },
  );

  it('validates, signs, and records durably what it signed before returning the signatures', async (t) => {
    const store = await openTempStore(t);
    await seed(store);
    const proposal = proposalFor(utxos);
    const outcome = await signProposal(store, pool, federation, checkProposal(proposal), TEST_POLICY, PROPOSER);
    assert.ok(outcome.ok);
    if (!outcome.ok) return;
    const record = await store.get<SignatureRecord>(signatureMadeKey(outcome.txid));
    assert.deepEqual(Buffer.from(record!.signatures), Buffer.from(outcome.signatures));
    assert.deepEqual(record!.requestIds, requestIds);
    assert.equal(record!.from, PROPOSER, 'whose link brought the proposal');
    const tx = parseTx(proposal.unsignedTx);
    const valid = await inProcessVerifier(federation)(
      tx,
      proposal.prevouts,
      federation.pubkeys.find((k) => Buffer.compare(k, schnorrBackend().xonlyPublicKey(secretKeys[0]!)) === 0)!,
      outcome.signatures,
    );
    assert.ok(valid.every((b) => b === 1));
    for (const input of tx.inputs) assert.equal((await getUtxo(store, input))?.reservedBy, outcome.txid);
    for (const id of requestIds) assert.equal((await getRequest(store, id))?.status, 'batched');
    // asking again returns the recorded signatures
    const again = await signProposal(store, pool, federation, checkProposal(proposal), TEST_POLICY, PROPOSER);
    assert.ok(again.ok && again.already && Buffer.compare(again.signatures, outcome.signatures) === 0);
  });

  it('refuses to pay the same requests from other inputs, but signs a replacement that spends the same ones', async (t) => {
    const store = await openTempStore(t);
    await seed(store);
    const first = proposalFor([utxos[0]!]);
    assert.ok((await signProposal(store, pool, federation, checkProposal(first), TEST_POLICY, PROPOSER)).ok);
    const other = proposalFor([utxos[1]!]);
    const refused = await signProposal(store, pool, federation, checkProposal(other), TEST_POLICY, PROPOSER);
    assert.equal(refused.ok ? 'signed' : refused.reason, 'double_payment');
    assert.equal((await getUtxo(store, utxos[1]!))?.state, 'unspent', 'a refusal reserves nothing');
    // RBF: same input, higher fee
    const bump = proposalFor([utxos[0]!], 5);
    assert.notEqual(
      serializeTx(parseTx(bump.unsignedTx)).toString(),
      serializeTx(parseTx(first.unsignedTx)).toString(),
    );
    const replaced = await signProposal(store, pool, federation, checkProposal(bump), TEST_POLICY, PROPOSER);
    assert.ok(replaced.ok, replaced.ok ? '' : replaced.detail);
    if (replaced.ok) assert.equal((await getUtxo(store, utxos[0]!))?.reservedBy, replaced.txid);
  });

  it('writes nothing for a proposal it refuses', async (t) => {
    const store = await openTempStore(t);
    await seed(store);
    const proposal = { ...proposalFor(utxos), requestIds: [`0x${hex32(9)}:9`, requestIds[1]!] };
    const outcome = await signProposal(store, pool, federation, checkProposal(proposal), TEST_POLICY, PROPOSER);
    assert.equal(outcome.ok ? 'signed' : outcome.reason, 'unknown_request');
    for (const u of utxos) assert.equal((await getUtxo(store, u))?.state, 'unspent');
  });

  it('counts in the rolling cap the requests of a payment it learned finalized without signing it, once', async (t) => {
    // a member whose link came up late learns the window's first payment from a peer: counted
    // only when signed, its room looked untouched and it proposed (and signed) past the cap
    const store = await openTempStore(t);
    await seed(store);
    const proposal = proposalFor([utxos[0]!]);
    const tx = parseTx(proposal.unsignedTx);
    const body = { tx: proposal.unsignedTx, prevouts: proposal.prevouts, requestIds: [...proposal.requestIds] };
    const limits = { ...DEFAULT_LIMITS, windowSats: 8_000_000n };
    const record = await recordFinalized(store, federation, txidOf(tx), tx, body, 'test', { ...TEST_POLICY, limits });
    assert.ok(record);
    assert.equal(await store.get(outflowKey(0)), 6_000_000n, 'both requests count in the window');
    assert.equal(
      await recordFinalized(store, federation, txidOf(tx), tx, body, 'test', { ...TEST_POLICY, limits }),
      undefined,
    );
    assert.equal(await store.get(outflowKey(0)), 6_000_000n, 'recorded before: not counted again');

    // what it signed counts once: at signing, not again when the payment is finalized
    const signer = await openTempStore(t);
    await seed(signer);
    const outcome = await signProposal(
      signer,
      pool,
      federation,
      checkProposal(proposal),
      { ...TEST_POLICY, limits },
      PROPOSER,
    );
    assert.ok(outcome.ok);
    await recordFinalized(signer, federation, txidOf(tx), tx, body, 'test', { ...TEST_POLICY, limits });
    assert.equal(await signer.get(outflowKey(0)), 6_000_000n);
  });
});
