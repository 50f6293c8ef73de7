import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encodeAddress } from '../../src/bitcoin/address.js';
import { witnessScript } from '../../src/bitcoin/script.js';
import { buildFederation, type Federation } from '../../src/bitcoin/federation.js';
import { serializeTx, type Transaction } from '../../src/bitcoin/tx.js';
import { decideRequest } from '../../src/evm/decider.js';
import { requestId } from '../../src/evm/request-id.js';
import { getRequests, stageNewRequest } from '../../src/evm/request-store.js';
import { STAGE_CLOCK, timeAsync } from '../../src/metrics/stages.js';
import { declaredOutputs } from '../../src/node/member.js';
import { settleLocally } from '../../src/node/settlement.js';
import { recordFinalized } from '../../src/node/finalize.js';
import { signProposal, type SigningPolicy } from '../../src/node/signer.js';
import { assembleWitnesses } from '../../src/signing/collector.js';
import { SigningPool } from '../../src/signing/pool.js';
import { schnorrBackend } from '../../src/signing/schnorr.js';
import { Store } from '../../src/storage/store.js';
import { DEFAULT_LIMITS } from '../../src/wallet/limits.js';
import { buildPayments } from '../../src/wallet/payment.js';
import { checkProposal, proposalFromPayment } from '../../src/wallet/proposal.js';
import { listUnspent, registerUtxo } from '../../src/wallet/utxos.js';
import { benchArgs, resultsDir } from '../e2e/args.js';
import { roundLine, timed, type Phase } from '../e2e/phases.js';

// One member's bookkeeping per request, in one process: ingest, validate and sign, verify the
// other signers' sets, record and apply the finalized payment, on a real store and signing pool,
// with no links, no EVM node and no other members sharing the cores. bench:e2e measures the whole
// federation, whose figures move ±20 % between runs on a shared 2-core machine; this isolates the
// part that every member pays for every request, so that a change to it can be measured side by
// side (A/B) within a few per cent. The main thread's CPU is read on the stage clock.

const HELP = `npm run bench:member -- [--requests K] [--threshold T] [--members N] [--rounds R] [--destination D] [--output-sats S] [--out DIR]
  --requests K    requests in each round, all final at once (default 10000)
  --members N     the federation's size (default 7)
  --threshold T   signature sets each payment needs (default 5): this member verifies T - 1
  --rounds R      rounds on one store, reported each (default 3): the first one warms the code up
  --destination D p2wpkh (default) or p2tr: the kind of address every request pays, a bech32 or a
                  bech32m one, for what deciding each kind costs
  --output-sats S the value of each funding output (default: a round's requests need 40 of them,
                  so a payment spends one or two); 1000000 gives bench:e2e's ~100-input payments,
                  1.5 inputs a request, for the cost of what a member does per input
  --out DIR       where member.json goes (default bench/results)`;

const { values, positive } = benchArgs('bench:member', HELP, {
  requests: { type: 'string', default: '10000' },
  members: { type: 'string', default: '7' },
  threshold: { type: 'string', default: '5' },
  rounds: { type: 'string', default: '3' },
  'output-sats': { type: 'string' },
  destination: { type: 'string', default: 'p2wpkh' },
  out: { type: 'string' },
});
const requests = positive(values.requests as string, '--requests');
const members = positive(values.members as string, '--members');
const threshold = positive(values.threshold as string, '--threshold');
const rounds = positive(values.rounds as string, '--rounds');
/** What every request of a round asks for, with room for the fees. */
const ROUND_SATS = requests * 1_600_000;
const outputSats =
  values['output-sats'] === undefined
    ? Math.ceil(ROUND_SATS / 40)
    : positive(values['output-sats'] as string, '--output-sats');
/** Witness version and program length of each destination kind. */
const DESTINATIONS: Readonly<Record<string, readonly [version: number, bytes: number]>> = {
  p2wpkh: [0, 20],
  p2tr: [1, 32],
};
const destination = DESTINATIONS[values.destination as string];
if (!destination) {
  process.stderr.write(`bench:member: --destination must be p2wpkh or p2tr, got ${String(values.destination)}\n`);
  process.exit(2);
}
if (threshold > members) {
  process.stderr.write(`bench:member: --threshold ${threshold} is more than --members ${members}\n`);
  process.exit(2);
}

/** Requests of 0.015 BTC each to distinct addresses of --destination: the address text as a log carries it. */
function requestLogs(count: number): { txHash: string; address: Uint8Array; wei: bigint }[] {
  const utf8 = new TextEncoder();
  const [version, bytes] = destination!;
  return Array.from({ length: count }, () => ({
    txHash: `0x${randomBytes(32).toString('hex')}`,
    address: utf8.encode(encodeAddress(witnessScript(version, randomBytes(bytes)), 'regtest')),
    wei: 1_500_000n * 10n ** 10n,
  }));
}

/** A signer of the federation: its key and a signing pool of one worker. */
interface Signer {
  readonly pubkey: string;
  readonly pool: SigningPool;
}

const POLICY: Omit<SigningPolicy, 'self'> = {
  fee: { floor: 1, estimate: 2, maxMultiple: 3, maxRate: 500, maxSharePerRequest: 100_000n },
  spendDepth: 1,
  paidDepth: 1,
  limits: DEFAULT_LIMITS,
};

type Phases = Record<'ingest' | 'build' | 'sign' | 'verify' | 'finalize', Phase>;

/**
 * What ingestion does with each final request log: decided and staged, all in one transaction,
 * inside a decide section as the EVM observer stages them. Outside any section each store put
 * would read the thread CPU clock twice (about 2 µs a put on this machine), a cost the member
 * does not pay.
 */
function ingestAll(store: Store, logs: ReturnType<typeof requestLogs>): Promise<void> {
  const at = new Date().toISOString();
  return store.transaction((batch) =>
    timeAsync('decide', async () => {
      for (const log of logs) {
        const d = decideRequest(log.address, log.wei, 'regtest');
        stageNewRequest(
          batch,
          {
            id: requestId(log.txHash, 0),
            txHash: log.txHash,
            ordinal: 0,
            blockNumber: 1,
            blockHash: `0x${'11'.repeat(32)}`,
            evmAddress: `0x${'22'.repeat(20)}`,
            bitcoinAddress: d.bitcoinAddress,
            wei: log.wei.toString(),
            sats: d.sats,
            subSatoshiWei: d.subSatoshiWei.toString(),
            status: d.status,
            ...(d.scriptPubKey ? { scriptPubKey: d.scriptPubKey } : {}),
          },
          at,
        );
      }
    }),
  );
}

/** One round: `requests` new requests through every phase, `self` signing with t − 1 `others`. */
async function round(
  store: Store,
  federation: Federation,
  { pubkey: self, pool }: Signer,
  others: readonly Signer[],
): Promise<Phases> {
  const logs = requestLogs(requests);
  const ingest = await timed(requests, () => ingestAll(store, logs));
  const ids = logs.map((l) => requestId(l.txHash, 0));
  let proposals: ReturnType<typeof proposalFromPayment>[] = [];
  const build = await timed(requests, async () => {
    const records = await getRequests(store, ids);
    const pending = records.map((r) => ({ id: r!.id, scriptPubKey: r!.scriptPubKey!, sats: r!.sats }));
    const spendable = (await listUnspent(store)).map((u) => ({ ...u, confirmations: 1 }));
    const plan = buildPayments(pending, spendable, 2, federation, {
      maxOutputs: 1000,
      maxSharePerRequest: POLICY.fee.maxSharePerRequest,
    });
    proposals = plan.payments.map((p) => proposalFromPayment(p, 0, self));
  });
  const signed: {
    tx: Transaction;
    prevouts: ReturnType<typeof checkProposal>['proposal']['prevouts'];
    txid: string;
  }[] = [];
  const sets: Map<string, Uint8Array>[] = [];
  const sign = await timed(requests, async () => {
    for (const proposal of proposals) {
      const checked = checkProposal(proposal);
      const outcome = await signProposal(store, pool, federation, checked, { ...POLICY, self }, self);
      if (!outcome.ok) throw new Error(`refused: ${outcome.reason} ${outcome.detail}`);
      signed.push({ tx: checked.tx, prevouts: checked.proposal.prevouts, txid: checked.txid });
      sets.push(new Map([[self, outcome.signatures]]));
    }
  });
  // the other signers' sets are made outside every timed phase: their signing is their own cost
  for (const [i, { tx, prevouts }] of signed.entries()) {
    for (const other of others) sets[i]!.set(other.pubkey, await other.pool.signTransaction(tx, prevouts));
  }
  const verify = await timed(requests, async () => {
    for (const [i, { tx, prevouts }] of signed.entries()) {
      for (const [key, signatures] of sets[i]!) {
        if (key === self) continue;
        const valid = await pool.verifyTransaction(tx, prevouts, Buffer.from(key, 'hex'), signatures);
        if (valid.some((b) => b !== 1)) throw new Error('a signature set does not verify');
      }
    }
  });
  const finalize = await timed(requests, async () => {
    for (const [i, { tx, prevouts, txid }] of signed.entries()) {
      const bySigner = new Map(
        [...sets[i]!].map(([k, s]) => [
          k,
          Array.from({ length: tx.inputs.length }, (_, j) => s.subarray(j * 64, j * 64 + 64)),
        ]),
      );
      const witnesses = assembleWitnesses(federation, bySigner, tx.inputs.length);
      const full: Transaction = { ...tx, inputs: tx.inputs.map((input, j) => ({ ...input, witness: witnesses[j]! })) };
      const body = { tx: serializeTx(full), prevouts, requestIds: proposals[i]!.requestIds };
      const record = await recordFinalized(store, federation, txid, full, body, `finalized in ${txid}`, {
        limits: DEFAULT_LIMITS,
        paidDepth: 1,
      });
      if (record) await settleLocally(store, federation, record);
    }
  });
  return { ingest, build, sign, verify, finalize };
}

async function main(): Promise<void> {
  const keys = Array.from({ length: members }, () => new Uint8Array(randomBytes(32)));
  const backend = schnorrBackend();
  const federation = buildFederation({
    network: 'regtest',
    threshold,
    pubkeys: keys.map((k) => backend.xonlyPublicKey(k)),
  });
  const signers: Signer[] = keys.slice(0, threshold).map((k) => ({
    pubkey: Buffer.from(backend.xonlyPublicKey(k)).toString('hex'),
    pool: new SigningPool(federation, { secretKey: k, size: 1 }),
  }));
  const [self, ...others] = signers as [Signer, ...Signer[]];
  const dir = await mkdtemp(path.join(tmpdir(), 'pegout-bench-member-'));
  const store = await Store.open(dir, { descriptor: federation.descriptor });
  try {
    // declared outputs, enough for every round
    const outputs = declaredOutputs(federation, Math.ceil((ROUND_SATS * rounds) / outputSats), outputSats);
    await store.transaction(async (batch) => {
      for (const o of outputs)
        await registerUtxo(batch, { ...o, scriptPubKey: federation.scriptPubKey, height: 0, pegIn: true });
    });
    const results = [];
    for (let r = 0; r < rounds; r++) {
      const result = await round(store, federation, self, others);
      results.push(result);
      process.stderr.write(roundLine(r + 1, result));
    }
    const out = resultsDir(values.out);
    await mkdir(out, { recursive: true });
    await writeFile(
      path.join(out, 'member.json'),
      `${JSON.stringify({ requests, members, threshold, outputSats, destination: values.destination, clock: STAGE_CLOCK, rounds: results }, null, 2)}\n`,
    );
  } finally {
    await Promise.all(signers.map((s) => s.pool.destroy()));
    await store.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
