import { readFile } from 'node:fs/promises';
import { equal } from '../bitcoin/bytes.js';
import { federationFaultTolerance, type Federation } from '../bitcoin/federation.js';
import { parseTx } from '../bitcoin/tx.js';
import { storedConfirmations, storedTipHeight } from '../chain/observer.js';
import type { BlockchainInfo, RpcTxOut } from '../chain/rpc.js';
import { ConfigError, type Config } from '../config/config.js';
import { cursorKey, finalizedKey, HANDOFF_PROVEN_KEY, HANDOFF_TX_PREFIX } from '../storage/keys.js';
import type { Store } from '../storage/store.js';
import {
  buildSweeps,
  buildTestSpend,
  parseRotationPlan,
  planSide,
  type HandoffPolicy,
  type HandoffTx,
} from '../wallet/handoff.js';
import type { EvmCursor, FinalizedRecord, HandoffProof, UtxoRecord } from '../storage/records.js';
import type { Logger } from './log.js';
import { countRequests, QUEUED } from '../evm/request-store.js';
import { liveHandoffs, type HandoffProgress, type HandoffView } from '../wallet/validate.js';

// The service's side of a membership change (issue 17, docs/rotation.md): which handoff
// transactions this member proposes in its turn, and the watch for the proof that the new set
// signs. What any member signs is decided by the validator alone (wallet/validate.ts,
// validateHandoff); this module only decides what to propose.

/** The rotation of config `rotation`, checked against the member's own federation; undefined without one. */
export async function loadHandoffPolicy(config: Config, federation: Federation): Promise<HandoffPolicy | undefined> {
  const r = config.rotation;
  if (!r) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(await readFile(r.plan, 'utf8'));
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? 'not valid JSON';
    throw new ConfigError(`config field rotation.plan: cannot read plan ${r.plan}: ${why}`, { field: 'rotation.plan' });
  }
  let plan;
  let side: 'from' | 'to';
  try {
    plan = parseRotationPlan(json, `rotation.plan ${r.plan}`);
    side = planSide(plan, federation, 'federation');
  } catch (err) {
    throw new ConfigError(`config field rotation.plan: ${(err as Error).message}`, { field: 'rotation.plan' });
  }
  if (side === 'to' && config.evm.startBlock > plan.evmBoundary)
    throw new ConfigError(
      `config field evm.startBlock is ${config.evm.startBlock}; expected at most the plan's evmBoundary ${plan.evmBoundary}: the new federation pays every request from it on, and none may go unread`,
      { field: 'evm.startBlock' },
    );
  return { plan, side, testAmount: BigInt(r.testAmount), maxFee: BigInt(r.maxFee) };
}

/**
 * Refuses a plan whose EVM boundary this member's store is already past (old side) or short of
 * (new side): every request below the boundary must be read by the old set only and every one
 * from it by the new set only, so the boundary must lie ahead of every old member's EVM cursor
 * when the plan is loaded.
 */
export async function checkHandoffStore(store: Store, policy: HandoffPolicy): Promise<void> {
  const cursor = await store.get<EvmCursor>(cursorKey('evm'));
  const { evmBoundary } = policy.plan;
  if (!cursor) return;
  const fault =
    policy.side === 'from' && cursor.height >= evmBoundary
      ? `this member has read EVM blocks up to ${cursor.height}, at or past the plan's evmBoundary ${evmBoundary}: requests from the boundary on would have two payers; make a plan with a boundary ahead of every old member's EVM cursor`
      : policy.side === 'to' && cursor.height < evmBoundary - 1
        ? `this member's store has read EVM blocks only up to ${cursor.height}, before the plan's evmBoundary ${evmBoundary}: it would read requests the old federation pays; start the new federation's member on a new store`
        : undefined;
  if (fault) throw new ConfigError(`config field rotation.plan: ${fault}`, { field: 'rotation.plan' });
}

/** The EVM blocks this member reads under a rotation: the old side below the boundary, the new side from it. */
export function handoffEvmRange(
  policy: HandoffPolicy | undefined,
  startBlock: number,
): { startBlock: number; endBlock?: number } {
  if (!policy) return { startBlock };
  const { evmBoundary } = policy.plan;
  return policy.side === 'from'
    ? { startBlock, endBlock: evmBoundary }
    : { startBlock: Math.max(startBlock, evmBoundary) };
}

/**
 * How far this member has seen the rotation come: the proof and the requests it owes (signer.ts
 * handoffState adds the handoffs it signed or knows finalized).
 */
export async function handoffView(store: Store, policy: HandoffPolicy): Promise<HandoffProgress> {
  const [proof, cursor] = await store.getMany<unknown>([HANDOFF_PROVEN_KEY, cursorKey('evm')]);
  const counts = await countRequests(store);
  const owed = [...QUEUED].reduce((n, status) => n + (counts.get(status) ?? 0), 0);
  // the old set owes only what it has read: until its cursor reaches the boundary, more may come
  const readAll = ((cursor as EvmCursor | undefined)?.height ?? -1) >= policy.plan.evmBoundary - 1;
  return { policy, proven: proof !== undefined, owed, readAll };
}

/** Handoffs this member signed or knows finalized (handoff/tx/). */
export async function handoffTxids(store: Store): Promise<string[]> {
  const out: string[] = [];
  for await (const [key] of store.entries({ prefix: HANDOFF_TX_PREFIX })) out.push(key.slice(HANDOFF_TX_PREFIX.length));
  return out;
}

/**
 * The handoff transactions this member proposes in its turn, when it has no request to pay and no
 * handoff of its own open: on the new side, once, a spend of its smallest output back to itself
 * (the proof that t new members sign); on the old side, from the activation height, the test
 * spend, then, once the proof is seen and nothing is owed, sweeps of every spendable output,
 * late peg-ins included. Each is checked by every signer, this member's own included. `view` is
 * what the signer reads (signer.ts handoffState): "once" means while no earlier one may confirm.
 */
export async function handoffProposals(
  store: Store,
  view: HandoffView,
  spendable: readonly UtxoRecord[],
  rate: number,
): Promise<HandoffTx[]> {
  if (spendable.length === 0) return [];
  const { policy } = view;
  const { plan, side } = policy;
  const done = liveHandoffs(view).length > 0;
  if (side === 'to') {
    const handedOver = spendable.filter((u) => u.handedOver);
    if (done || handedOver.length === 0) return [];
    const smallest = handedOver.sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0))[0]!;
    return buildSweeps([smallest], rate, plan, plan.to, policy.maxFee).sweeps;
  }
  const tip = await storedTipHeight(store);
  if (tip === undefined || tip < plan.activationHeight) return [];
  if (!view.proven) {
    // one test spend: then the new set's move
    if (done) return [];
    const test = buildTestSpend(spendable, policy.testAmount, rate, plan);
    return test ? [test] : [];
  }
  if (view.owed > 0 || !view.readAll) return [];
  return buildSweeps(spendable, rate, plan, plan.from, policy.maxFee).sweeps;
}

/** The part of Bitcoin Core the watch asks. */
export interface HandoffChain {
  getTxOut(txid: string, vout: number, includeMempool?: boolean): Promise<RpcTxOut | null>;
  getBlockchainInfo(): Promise<Pick<BlockchainInfo, 'blocks' | 'initialblockdownload'>>;
}

/**
 * On the old side: records the proof once an output a handoff sent to the new address, confirmed
 * at `depth` here, is gone from Bitcoin Core's UTXO set: spent by a confirmed transaction. Only t
 * new members can spend it, so it is gone only when they signed; until then the old set moves no
 * more than the test amount.
 */
export async function watchHandoff(
  store: Store,
  policy: HandoffPolicy,
  chain: HandoffChain,
  depth: number,
  log: Logger,
): Promise<void> {
  if (policy.side !== 'from' || (await store.get(HANDOFF_PROVEN_KEY)) !== undefined) return;
  const tip = await storedTipHeight(store);
  // gettxout's null is a spend only from a node that has the chain this member read: one that is
  // syncing, reindexing or behind a reorg this member saw answers null for outputs it lacks
  const node = await chain.getBlockchainInfo();
  if (tip === undefined || node.initialblockdownload || node.blocks < tip) return;
  for (const txid of await handoffTxids(store)) {
    if ((await storedConfirmations(store, txid)) < depth) continue;
    const record = await store.get<FinalizedRecord>(finalizedKey(txid));
    if (!record) continue;
    const outputs = parseTx(record.tx).outputs;
    for (const [vout, output] of outputs.entries()) {
      if (!equal(output.scriptPubKey, policy.plan.to.scriptPubKey)) continue;
      // not in the UTXO set of the chain (mempool aside) while the test spend is deep: spent in a block
      if ((await chain.getTxOut(txid, vout, false)) !== null) continue;
      const proof: HandoffProof = { txid, vout, height: tip, at: new Date().toISOString() };
      await store.batch().put(HANDOFF_PROVEN_KEY, proof).write({ sync: true });
      log.warn('handoff_proven', { ...proof, next: 'the old federation now sweeps its outputs to the new address' });
      return;
    }
  }
}

/** The rotation as /federation shows it: both federations, the points, and how far this member saw it come. */
export async function handoffSummary(store: Store, policy: HandoffPolicy): Promise<Record<string, unknown>> {
  const { plan, side } = policy;
  const view = await handoffView(store, policy);
  const proof = await store.get<HandoffProof>(HANDOFF_PROVEN_KEY);
  const describe = (f: Federation) => ({
    address: f.address,
    descriptor: f.descriptor,
    threshold: f.threshold,
    members: f.pubkeys.length,
    faultTolerance: federationFaultTolerance(f),
  });
  return {
    fingerprint: plan.fingerprint,
    side,
    activationHeight: plan.activationHeight,
    evmBoundary: plan.evmBoundary,
    from: describe(plan.from),
    to: describe(plan.to),
    handoffTransactions: (await handoffTxids(store)).length,
    proven: side === 'from' ? (proof ?? null) : undefined,
    requestsOwed: view.owed,
  };
}
