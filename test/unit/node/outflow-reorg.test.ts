import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { parseRequestId } from '../../../src/evm/request-id.js';
import type { EvmError } from '../../../src/evm/errors.js';
import { getRequest, stageForget, stageNewRequest } from '../../../src/evm/request-store.js';
import { Outflow } from '../../../src/node/outflow.js';
import { signProposal } from '../../../src/node/signer.js';
import { SigningPool } from '../../../src/signing/pool.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { buildPayments, requirePayments } from '../../../src/wallet/payment.js';
import { checkProposal, proposalFromPayment } from '../../../src/wallet/proposal.js';
import type { Store } from '../../../src/storage/store.js';
import { registerUtxo } from '../../../src/wallet/utxos.js';
import { TEST_POLICY } from '../../support/policy.js';
import { openTempStore } from '../../support/tempdir.js';
import { testRequest } from '../../support/requests.js';

// A release is an operator's approval of one held request as it read it (address, amount). It is
// stored under the request's id, the transaction hash and the log's ordinal, which do not say what
// the log asked: the same transaction mined again on another branch after an EVM reorg can emit a
// RequestPegOut with another address and amount (a contract that reads its own state). The request
// forgotten in the reorg (EvmObserver.undo → stageForget) takes its releases with it, or they would
// be taken for the new one's, by this member's signer and by its plan.

const secretKeys = [1, 2, 3].map((i) => Buffer.alloc(32, i));
const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: secretKeys.map((k) => schnorrBackend().xonlyPublicKey(k)),
});
const self = toHex(schnorrBackend().xonlyPublicKey(secretKeys[0]!));
const members = federation.pubkeys.map(toHex);
const pool = new SigningPool(federation, { secretKey: secretKeys[0]!, size: 1 });
after(() => pool.destroy());

const hex32 = (n: number): string => n.toString(16).padStart(64, '0');
const ID = `0x${hex32(77)}:0`;
const limits = { maxRequestSats: 2_000_000n, windowSats: 100_000_000n, windowBlocks: 144 };
const policy = { ...TEST_POLICY, self, limits };
const ADDRESS_A = witnessScript(0, new Uint8Array(20).fill(0xaa));
const ADDRESS_B = witnessScript(0, new Uint8Array(20).fill(0xbb));
const UTXO = { txid: hex32(500), vout: 0, value: 20_000_000n, scriptPubKey: federation.scriptPubKey };

/** A store where request ID, 3,000,000 sats to A, is held. */
async function held(t: import('node:test').TestContext) {
  const store = await openTempStore(t);
  const outflow = new Outflow(store, self, federation.threshold, members, limits);
  const seed = store.batch();
  // the request as first ingested: 3,000,000 sats to address A, over the 2,000,000 limit: held
  stageNewRequest(
    seed,
    testRequest({
      ...parseRequestId(ID),
      blockNumber: 5,
      sats: 3_000_000n,
      scriptPubKey: ADDRESS_A,
      bitcoinAddress: 'A',
    }),
    'then',
  );
  await registerUtxo(seed, { ...UTXO, height: 1, pegIn: true });
  await seed.write({ sync: true });
  await outflow.plan();
  assert.equal((await getRequest(store, ID))?.status, 'held');
  return { store, outflow };
}

/** The same transaction mined again on the new branch, its log now saying 9,000,000 sats to B. */
async function minedAgain(store: Store): Promise<void> {
  const again = store.batch();
  stageNewRequest(
    again,
    testRequest({
      ...parseRequestId(ID),
      blockNumber: 6,
      sats: 9_000_000n,
      scriptPubKey: ADDRESS_B,
      bitcoinAddress: 'B',
    }),
    'now',
  );
  await again.write({ sync: true });
}

/** What the signer does with a payment of the new request, as any proposer builds it. */
async function signerOnNewRequest(store: Store): Promise<string> {
  const [payment] = requirePayments(
    buildPayments([{ id: ID, scriptPubKey: ADDRESS_B, sats: 9_000_000n }], [UTXO], 2, federation, { maxOutputs: 10 }),
    1,
  );
  const checked = checkProposal(proposalFromPayment(payment!, 1, members[1]!));
  const outcome = await signProposal(store, pool, federation, checked, policy, members[1]!);
  return outcome.ok ? 'signed' : outcome.reason;
}

async function reorged(t: import('node:test').TestContext) {
  const { store, outflow } = await held(t);
  // this member's operator looked at it (3,000,000 sats to A) and released it; so did a peer's
  await outflow.release(ID);
  assert.equal(
    await outflow.peerReleased(
      members.find((m) => m !== self)!,
      ID,
    ),
    true,
  );

  // an EVM reorg: the block leaves the chain, the observer forgets the request (EvmObserver.undo)
  const forget = store.batch();
  await stageForget(forget, store, (await getRequest(store, ID))!);
  await forget.write({ sync: true });
  await minedAgain(store);
  return { store, outflow };
}

describe('releases of a held request forgotten in an EVM reorg', () => {
  it('are not shown for the request the same transaction makes on the new branch', async (t) => {
    const { outflow } = await reorged(t);
    const [hold] = await outflow.holds();
    assert.equal(hold?.bitcoinAddress, 'B');
    assert.deepEqual(
      { releasedBy: hold?.releasedBy, releasedHere: hold?.releasedHere },
      { releasedBy: [], releasedHere: false },
      'nobody released the request for 9,000,000 sats to B; the releases shown are those of the request that left the chain',
    );
  });

  it('do not let the signer pay that request', async (t) => {
    const { store } = await reorged(t);
    assert.equal(
      await signerOnNewRequest(store),
      'request_held',
      'signed a payment of 9,000,000 sats to B on the strength of a release given for 3,000,000 sats to A',
    );
  });
});

// EvmObserver.undo stages the forget in a store transaction, then asks the EVM node about older blocks
// before it writes. A release read the request and wrote its hold key outside the store's exclusive
// section, so one made in that window (the operator still saw the request held) outlived the forget
// and counted for the request mined again under the same id.
describe('a release while the rollback that forgets its request is under way', () => {
  it('waits for the rollback, finds no request, and counts for none', async (t) => {
    const { store, outflow } = await held(t);
    let answer!: () => void;
    const evmNode = new Promise<void>((resolve) => (answer = resolve));
    let staged!: () => void;
    const forgetStaged = new Promise<void>((resolve) => (staged = resolve));
    const rollback = store.transaction(async (batch) => {
      await stageForget(batch, store, (await getRequest(batch, ID))!);
      staged();
      await evmNode;
    });
    await forgetStaged;
    const own = outflow.release(ID).then(
      () => 'released',
      (err: EvmError) => err.code,
    );
    const fromPeer = outflow.peerReleased(
      members.find((m) => m !== self)!,
      ID,
    );
    // time enough for both to have written, had they not waited for the rollback
    await new Promise((resolve) => setTimeout(resolve, 50));
    answer();
    await rollback;
    assert.deepEqual({ own: await own, fromPeer: await fromPeer }, { own: 'unknown_request', fromPeer: false });

    await minedAgain(store);
    const [hold] = await outflow.holds();
    assert.deepEqual(
      { releasedBy: hold?.releasedBy, releasedHere: hold?.releasedHere, signer: await signerOnNewRequest(store) },
      { releasedBy: [], releasedHere: false, signer: 'request_held' },
      'releases given for 3,000,000 sats to A during the rollback count for 9,000,000 sats to B',
    );
  });
});
