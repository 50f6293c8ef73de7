import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { parseRequestId } from '../../../src/evm/request-id.js';
import { getRequest, stageForget, stageNewRequest } from '../../../src/evm/request-store.js';
import { Outflow } from '../../../src/node/outflow.js';
import { signProposal } from '../../../src/node/signer.js';
import { SigningPool } from '../../../src/signing/pool.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { buildPayments, requirePayments } from '../../../src/wallet/payment.js';
import { checkProposal, proposalFromPayment } from '../../../src/wallet/proposal.js';
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

async function reorged(t: import('node:test').TestContext) {
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
  // the same transaction is mined again on the new branch and its log now says 9,000,000 sats to B
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
    // a payment of the new request, as any proposer builds it: this member's signer must refuse it
    const [payment] = requirePayments(
      buildPayments([{ id: ID, scriptPubKey: ADDRESS_B, sats: 9_000_000n }], [UTXO], 2, federation, { maxOutputs: 10 }),
      1,
    );
    const checked = checkProposal(proposalFromPayment(payment!, 1, members[1]!));
    const outcome = await signProposal(store, pool, federation, checked, policy, members[1]!);
    assert.equal(
      outcome.ok ? 'signed' : outcome.reason,
      'request_held',
      'signed a payment of 9,000,000 sats to B on the strength of a release given for 3,000,000 sats to A',
    );
  });
});
