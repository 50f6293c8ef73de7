import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation } from '../../../src/bitcoin/federation.js';
import { witnessScript } from '../../../src/bitcoin/script.js';
import { signedFederationVsize } from '../../../src/bitcoin/weight.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { feeFor, feeShare, maxAcceptedRate, type FeePolicy } from '../../../src/wallet/fee.js';
import { DEFAULT_LIMITS } from '../../../src/wallet/limits.js';
import {
  buildPayments,
  paymentOutputs,
  requirePayments,
  unsignedSpend,
  type PaymentRequest,
} from '../../../src/wallet/payment.js';
import { checkProposal, proposalFromPayment } from '../../../src/wallet/proposal.js';
import { validateProposal, type SignedPayment, type ValidationState } from '../../../src/wallet/validate.js';
import type { UtxoRecord } from '../../../src/storage/records.js';

// Open (found by a review of the fee policy, not fixed): the validator holds the fee to a rate over
// the transaction's signed size and to a share cap per request, but does not ask whether the inputs
// are needed. A malicious proposer pads a payment of one request with federation outputs it does not
// need (the change takes their value back, so Σ inputs − Σ sats holds exactly): the size, hence the
// fee the user bears, grows with every input while the rate stays within 3× the estimate. The user
// pays for sweeping the federation's small outputs (anyone can send it dust) up to the share cap:
// 100,000 sats here, against about 1,400 from the one input that funds the request. Bounded by the
// policy's cap (maxSharePerRequest), so no more than an operator accepted for one request. Refusing
// inputs that are not needed to fund is not enough as it stands: a merge spends an input of each
// rival, and a member that never saw a rival holds its input as free, so it would refuse the merge.

const federation = buildFederation({
  network: 'regtest',
  threshold: 2,
  pubkeys: [1, 2, 3].map((i) => schnorrBackend().xonlyPublicKey(Buffer.alloc(32, i))),
});
const PROPOSER = toHex(federation.pubkeys[1]!);
const hex32 = (n: number): string => n.toString(16).padStart(64, '0');
const POLICY: FeePolicy = { floor: 1, estimate: 2, maxMultiple: 3, maxRate: 500, maxSharePerRequest: 100_000n };

const big: UtxoRecord = {
  txid: hex32(1),
  vout: 0,
  value: 10_000_000n,
  scriptPubKey: federation.scriptPubKey,
  height: 100,
  state: 'unspent',
};
// small federation outputs, e.g. sent by anyone to the federation's address
const small: UtxoRecord[] = Array.from({ length: 200 }, (_, i) => ({
  txid: hex32(1000 + i),
  vout: 0,
  value: 5_000n,
  scriptPubKey: federation.scriptPubKey,
  height: 100,
  state: 'unspent' as const,
}));
const request: PaymentRequest = {
  id: `0x${hex32(7)}:0`,
  scriptPubKey: witnessScript(0, new Uint8Array(20).fill(7)),
  sats: 4_000_000n,
};

function state(signed: SignedPayment[] = []): ValidationState {
  const us = new Map([big, ...small].map((u) => [`${u.txid}:${u.vout}`, u]));
  return {
    federation,
    sender: PROPOSER,
    request: (id) =>
      id === request.id
        ? {
            status: signed.length ? 'signed' : 'accepted',
            scriptPubKey: request.scriptPubKey,
            sats: request.sats,
            counts: true,
          }
        : undefined,
    utxo: (name) => us.get(name),
    signedPayments: (id) => (id === request.id ? signed : []),
    holder: () => undefined,
    ancestors: [],
    fee: POLICY,
    chain: null,
    limits: DEFAULT_LIMITS,
    released: () => false,
    outflow: { window: 7, used: 0n },
  };
}

/** One request paid from `inputs` at the highest share this member's rate cap allows for that size (capped). */
function padded(inputs: UtxoRecord[], rate = maxAcceptedRate(POLICY)) {
  const total = inputs.reduce((a, u) => a + u.value, 0n);
  const probe = unsignedSpend(inputs, paymentOutputs([request], total, 0n, federation));
  const vsize = signedFederationVsize(federation, probe);
  let share = feeShare(feeFor(rate, vsize), 1);
  if (share > POLICY.maxSharePerRequest) share = POLICY.maxSharePerRequest;
  const tx = unsignedSpend(inputs, paymentOutputs([request], total, share, federation));
  const proposal = proposalFromPayment({ tx, prevouts: inputs, requestIds: [request.id] }, 1, PROPOSER);
  return { checked: checkProposal(proposal), share, vsize };
}

describe('a payment padded with inputs it does not need', () => {
  it(
    'does not let a proposer charge one user up to the share cap for sweeping federation outputs',
    { todo: 'open: see above' },
    () => {
      // what the policy allows for this request paid from the input that funds it
      const needed = padded([big]);
      assert.equal(validateProposal(needed.checked, state()).ok, true, 'the fair payment at 3x the estimate');
      const fairMax = needed.share;

      // the same request, the same funding input, plus 160 federation outputs it does not need
      const attack = padded([big, ...small.slice(0, 160)]);
      const verdict = validateProposal(attack.checked, state());
      assert.equal(
        verdict.ok,
        false,
        `signed: request ${request.id} bears a fee share of ${attack.share} sats (${attack.vsize} vB), ` +
          `${Number(attack.share) / Number(fairMax)}x the ${fairMax} sats this member's policy allows a payment ` +
          `from the one input that funds it; the other ${attack.checked.tx.inputs.length - 1} inputs only sweep federation outputs at the user's expense`,
      );
    },
  );

  it(
    'nor reach the share cap step by step through BIP125 replacements of a finalized payment',
    { todo: 'open: see above' },
    () => {
      // an honest finalized payment of the request at the estimate
      const [honest] = requirePayments(buildPayments([request], [{ ...big }], 2, federation, { maxOutputs: 10 }), 1);
      let earlier: SignedPayment[] = [
        {
          txid: 'f'.repeat(64),
          inputs: [`${big.txid}:0`],
          fee: honest!.fee,
          vsize: honest!.vsize,
          dead: false,
          finalized: true,
        },
      ];
      const steps: string[] = [];
      // each step a higher rate (BIP125), each under this member's cap of 3x its estimate, and more inputs
      for (const [extra, rate] of [
        [20, 3],
        [60, 4],
        [100, 5],
        [140, 6],
      ] as const) {
        const step = padded([big, ...small.slice(0, extra)], rate);
        const verdict = validateProposal(step.checked, state(earlier));
        steps.push(
          `${extra} extra inputs: share ${step.share} ${verdict.ok ? 'signed' : `refused (${verdict.reason})`}`,
        );
        if (!verdict.ok) break;
        const fee =
          step.checked.proposal.prevouts.reduce((a, p) => a + p.value, 0n) -
          step.checked.tx.outputs.reduce((a, o) => a + o.value, 0n);
        earlier = [
          ...earlier,
          {
            txid: step.checked.txid,
            inputs: step.checked.tx.inputs.map((i) => `${i.txid}:${i.vout}`),
            fee,
            vsize: step.vsize,
            dead: false,
            finalized: true,
          },
        ];
      }
      const fairMax = padded([big]).share;
      const last = padded([big, ...small.slice(0, 140)], 6);
      assert.ok(
        !steps.every((s) => s.endsWith('signed')) || last.share <= 3n * fairMax,
        `each replacement signed, the user's fee share went from ${honest!.feeShare} to ${last.share} sats ` +
          `(the policy allows ${fairMax} for the input that funds it): ${steps.join('; ')}`,
      );
    },
  );
});
