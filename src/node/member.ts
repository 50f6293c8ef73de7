import { setTimeout as sleep } from 'node:timers/promises';
import { startApi, type ApiServer } from '../api/server.js';
import { storeStatusSource } from '../api/status.js';
import { toHex } from '../bitcoin/bytes.js';
import { buildFederation, federationFaultTolerance, memberIndex, type Federation } from '../bitcoin/federation.js';
import { taggedHash } from '../bitcoin/hash.js';
import { BitcoinObserver, recoverUtxo } from '../chain/observer.js';
import { BitcoinRpcClient } from '../chain/rpc.js';
import { ConfigError, type Config } from '../config/config.js';
import { countRequests } from '../evm/request-store.js';
import { EvmObserver } from '../evm/observer.js';
import { EvmRpc } from '../evm/rpc.js';
import { Activity } from '../metrics/activity.js';
import { createMetrics, type Metrics } from '../metrics/metrics.js';
import { PeerNetwork } from '../p2p/network.js';
import { readKeyFile, takeSecretKeyFromEnv } from '../signing/keyfile.js';
import { SigningPool } from '../signing/pool.js';
import { schnorrBackend } from '../signing/schnorr.js';
import { cursorKey } from '../storage/keys.js';
import { Store } from '../storage/store.js';
import { getUtxo, registerUtxo, utxoTotals, type Outpoint } from '../wallet/utxos.js';
import { Coordinator } from './coordinator.js';
import type { SigningPolicy } from './signer.js';
import { createLogger, peerLog, type Logger } from './log.js';
import { ChainSettlement, settleLocally, settleLocallyAtStart } from './settlement.js';
import { pauseOnSignFault, Safety } from './safety.js';
import { Outflow } from './outflow.js';
import { adminPaths, startAdmin, type AdminServer } from '../api/admin.js';
import type { OutflowLimits } from '../wallet/limits.js';
import { reserveAuditor, type ReserveAuditor } from './reserves.js';
import { checkHandoffStore, handoffEvmRange, handoffSummary, loadHandoffPolicy, watchHandoff } from './handoff.js';
import type { HandoffPolicy } from '../wallet/handoff.js';

// One federation member: the pipeline stages wired together in one process. The main thread
// ingests events and keeps state in RocksDB; the pool signs and verifies; links carry frames.

export interface Member {
  readonly key: string;
  readonly federation: Federation;
  readonly p2pPort: number;
  readonly apiPort: number;
  stop(): Promise<void>;
}

/**
 * The outputs a devnet without Bitcoin Core declares: every member derives the same ones from
 * the federation script. Their txids are tagged hashes, so they can never name a real
 * transaction's output.
 */
export function declaredOutputs(
  federation: Federation,
  count: number,
  sats: number,
): { txid: string; vout: number; value: bigint }[] {
  return Array.from({ length: count }, (_, i) => {
    const index = new Uint8Array(4);
    new DataView(index.buffer).setUint32(0, i);
    return {
      txid: toHex(taggedHash('pegout/devnet-declared-output', federation.scriptPubKey, index)),
      vout: 0,
      value: BigInt(sats),
    };
  });
}

/** How often the operator page's charts get a point (the window is Activity's 300 samples: 10 minutes). */
const ACTIVITY_SAMPLE_MS = 2000;

async function loadMemberKey(config: Config, env: NodeJS.ProcessEnv): Promise<Uint8Array> {
  if (config.memberKeyFile !== null) return readKeyFile(config.memberKeyFile);
  return takeSecretKeyFromEnv(env, 'PEGOUT_MEMBER_KEY');
}

/** The gauges the member keeps from its store and links, refreshed every second. */
export async function refreshMetrics(
  store: Store,
  metrics: Metrics,
  network: Pick<PeerNetwork, 'stats'>,
  dropped: Map<string, number>,
): Promise<void> {
  // counted before the reset, so that a scrape, /overview or an activity sample never sees the gauge empty
  const counts = await countRequests(store);
  metrics.requests.reset();
  for (const [status, n] of counts) metrics.requests.set({ status }, n);
  for (const state of ['unspent', 'reserved'] as const) {
    const { outputs, sats } = await utxoTotals(store, state);
    metrics.utxos.set({ state }, outputs);
    if (state === 'unspent') metrics.balance.set(Number(sats));
  }
  metrics.peers.set(network.stats.connected);
  for (const [reason, n] of Object.entries(network.stats.dropped)) {
    metrics.framesDropped.inc({ reason }, n - (dropped.get(reason) ?? 0));
    dropped.set(reason, n);
  }
  const [evm, bitcoin] = await store.getMany<{ height: number }>([cursorKey('evm'), cursorKey('bitcoin')]);
  if (evm) metrics.cursor.set({ chain: 'evm' }, evm.height);
  if (bitcoin) metrics.cursor.set({ chain: 'bitcoin' }, bitcoin.height);
}

/** Runs `step` every `ms` until the signal aborts; a failing step is logged and retried. */
async function every(
  ms: number,
  signal: AbortSignal,
  log: Logger,
  name: string,
  step: () => Promise<void>,
): Promise<void> {
  while (!signal.aborted) {
    try {
      await step();
    } catch (err) {
      log.warn(`${name}_failed`, { error: err as Error });
    }
    await sleep(ms, undefined, { signal }).catch(() => undefined);
  }
}

/** The member's links, with their events in the log. */
function startLinks(config: Config, secretKey: Uint8Array, pubkeys: Uint8Array[], log: Logger): PeerNetwork {
  const network = new PeerNetwork({
    secretKey,
    members: pubkeys,
    listen: { host: config.p2p.host, port: config.p2p.port },
    peers: new Map(Object.entries(config.p2p.peers)),
  });
  network.on('peer', (peer: string) => log.info('peer_connected', { peer }));
  network.on('peer_down', (peer: string) => log.info('peer_disconnected', { peer }));
  network.on('banned', (peer: string) => log.warn('peer_banned', { peer }));
  // strangers cannot be told apart before they authenticate: their refusals share one budget
  const strangers = peerLog(log);
  network.on('refused', (reason: string) => strangers.warn('strangers', 'link_refused', { reason }));
  network.on('server_error', (detail: string) => log.warn('link_server_error', { detail }));
  return network;
}

/**
 * What the member knows of the Bitcoin side: its fee market, its depths, settlement and UTXO recovery when Core is
 * there.
 */
interface ChainSide {
  /** The fee market as this member sees it: the floor and the estimate, in sat/vB. */
  readonly market: () => Promise<{ floor: number; estimate: number; maxRate: number }>;
  readonly spendDepth: number;
  readonly paidDepth: number;
  readonly settlement?: ChainSettlement;
  readonly recoverInput?: (o: Outpoint) => Promise<unknown>;
  /** Bitcoin Core, when configured. */
  readonly rpc?: BitcoinRpcClient;
}

async function startChainSide(
  config: Config,
  store: Store,
  federation: Federation,
  handoff: HandoffPolicy | undefined,
  log: Logger,
  metrics: Metrics,
  safety: Safety,
  cleanup: (() => Promise<void>)[],
  peers: () => Pick<Coordinator, 'settled' | 'askFinalized' | 'revived'> | undefined,
): Promise<ChainSide> {
  const b = config.bitcoin;
  if (!b) return declaredChainSide(config, store, federation, log);
  const auth = b.cookieFile ? { cookieFile: b.cookieFile } : { user: b.user!, password: b.password! };
  const rpc = new BitcoinRpcClient({ url: b.rpcUrl, auth });
  cleanup.push(async () => rpc.close());
  const observer = new BitcoinObserver({
    store,
    chain: rpc,
    federationScript: federation.scriptPubKey,
    startHeight: b.startHeight,
    ...(handoff?.side === 'to' ? { handedOverFrom: handoff.plan.from } : {}),
  });
  const settlement = new ChainSettlement({
    store,
    federation,
    rpc,
    observer,
    log,
    metrics,
    paidConfirmations: b.paidConfirmations,
    rbfAfterBlocks: b.rbfAfterBlocks,
    maxFeeRate: b.maxFeeRate,
    onSettled: (txid) => peers()?.settled(txid),
    onUnnamed: (txid) => peers()?.askFinalized(txid),
    onRevived: async (txids) => peers()?.revived(txids),
    alarm: (kind, detail, fields) => safety.alarm(kind, detail, { ...fields }),
    ...(handoff ? { handoff } : {}),
    limits: outflowLimits(config),
  });
  await settlement.load();
  const market = async (): Promise<{ floor: number; estimate: number; maxRate: number }> => {
    const r = await rpc.feeRate({
      confTarget: b.confTarget,
      fallbackSatPerVb: b.fallbackFeeRate,
      maxSatPerVb: b.maxFeeRate,
    });
    return { floor: r.floorSatPerVb, estimate: r.satPerVb, maxRate: b.maxFeeRate };
  };
  return {
    market,
    spendDepth: b.spendConfirmations,
    paidDepth: b.paidConfirmations,
    settlement,
    recoverInput: (o) => recoverUtxo(store, rpc, federation.scriptPubKey, o),
    rpc,
  };
}

/** Without Bitcoin Core: the devnet's declared outputs (on no chain) and a fixed fee rate. */
async function declaredChainSide(
  config: Config,
  store: Store,
  federation: Federation,
  log: Logger,
): Promise<ChainSide> {
  const declared = config.declaredFunding;
  if (declared) {
    const outputs = declaredOutputs(federation, declared.count, declared.sats);
    if (!(await getUtxo(store, outputs[0]!))) {
      await store.transaction(async (batch) => {
        for (const o of outputs)
          await registerUtxo(batch, { ...o, scriptPubKey: federation.scriptPubKey, height: 0, pegIn: true });
      });
    }
    log.warn('declared_funding', {
      outputs: declared.count,
      sats: declared.sats,
      note: 'federation outputs DECLARED by the devnet: they exist on no chain; payments are signed and verified, never broadcast',
    });
  } else {
    log.warn('no_bitcoin', {
      note: 'no Bitcoin Core configured and no declared funding: requests are ingested but cannot be paid',
    });
  }
  // what settlement.load() is with Core: a payment finalized before a stop is applied to the outputs
  await settleLocallyAtStart(store, federation);
  const fixed = declared?.feeRate ?? 2;
  return {
    market: async () => ({ floor: 1, estimate: fixed, maxRate: Math.max(fixed, 500) }),
    spendDepth: 1,
    paidDepth: 1,
  };
}

/** This member's signing rules now: its own view of the fee market, its configured caps, limits and depths. */
async function signingPolicy(
  config: Config,
  chain: ChainSide,
  self: string,
  limits: OutflowLimits,
  handoff: HandoffPolicy | undefined,
): Promise<SigningPolicy> {
  const { fees } = config;
  return {
    ...(handoff ? { handoff } : {}),
    self,
    limits,
    fee: {
      ...(await chain.market()),
      maxMultiple: fees.maxMultiple,
      maxSharePerRequest: BigInt(fees.maxSharePerRequest),
    },
    spendDepth: chain.spendDepth,
    paidDepth: chain.paidDepth,
  };
}

/** The outflow limits from the config, as the signer and the schedule use them. */
function outflowLimits(config: Config): OutflowLimits {
  const { maxRequestSats, windowSats, windowBlocks } = config.limits;
  return { maxRequestSats: BigInt(maxRequestSats), windowSats: BigInt(windowSats), windowBlocks };
}

/**
 * The operator's surface: the admin socket (holds, pause, resume) and the safety part of the health report. With more
 * than n − t members paused, fewer than t can sign: the federation pays nothing.
 */
async function startOperatorSurface(
  config: Config,
  federation: Federation,
  parts: { outflow: Outflow; coordinator: Coordinator; safety: Safety; log: Logger },
): Promise<{ admin: AdminServer; health: () => Record<string, unknown> }> {
  const { outflow, coordinator, safety, log } = parts;
  const state = async () => ({ ...safety.report(), pausedMembers: coordinator.pausedMembers() });
  const admin = await startAdmin(adminPaths(config.storeDir, config.admin), {
    holds: () => outflow.holds(),
    release: async (id) => {
      await coordinator.release(id);
      log.warn('hold_released', { request: id });
      return { released: id, releasedBy: await outflow.releases(id), threshold: federation.threshold };
    },
    reject: async (id) => {
      await outflow.reject(id);
      log.warn('hold_rejected', { request: id });
      return { rejected: id };
    },
    pause: async (reason) => {
      await safety.pause({ kind: 'operator', detail: reason });
      return state();
    },
    resume: async () => {
      await safety.resume();
      return state();
    },
    state,
  });
  const health = () => {
    const { paused, alarms } = safety.report();
    const pausedMembers = coordinator.pausedMembers();
    const federationPaying = pausedMembers <= federation.pubkeys.length - federation.threshold;
    const degraded = [
      ...(paused ? ['paused'] : []),
      ...alarms.map((a) => `alarm:${a.kind}`),
      ...(federationPaying ? [] : ['federation_not_paying']),
    ];
    return { paused, alarms, pausedMembers, federationPaying, degraded };
  };
  return { admin, health };
}

/** The read-only HTTP API and the status pages, on the member's store and live state. */
function startMemberApi(
  config: Config,
  store: Store,
  member: { federation: Federation; key: string },
  network: PeerNetwork,
  metrics: Metrics,
  live: {
    safety: () => Record<string, unknown>;
    reserves: ReserveAuditor;
    activity: Activity;
    rotation?: () => Promise<Record<string, unknown>>;
  },
  log: Logger,
): Promise<ApiServer> {
  // held to a budget as peers' refusals are: anyone can ask for a failing page again and again
  const failures = peerLog(log);
  const { federation } = member;
  const bitcoin = config.bitcoin
    ? 'configured'
    : config.declaredFunding
      ? 'none: declared funding that exists on no chain'
      : 'none';
  const health = () => ({
    peersConnected: network.stats.connected,
    members: federation.pubkeys.length,
    threshold: federation.threshold,
    bitcoin,
    ...live.safety(),
  });
  const requestCounts = async () =>
    Object.fromEntries((await metrics.requests.get()).values.map((v) => [String(v.labels.status), v.value]));
  return startApi({
    host: config.api.host,
    port: config.api.port,
    limits: { lookupsPerSecond: config.api.lookupsPerSecond, lookupsPerSecondTotal: config.api.lookupsPerSecondTotal },
    hostnames: config.api.hostnames,
    onError: (url, err) => failures.warn('api', 'api_route_failed', { url, error: err }),
    registry: metrics.registry,
    source: storeStatusSource(store, federation, {
      health,
      reserves: live.reserves,
      self: member.key,
      links: () => network.linkStates(),
      requestCounts,
      activity: () => live.activity.points(),
      broadcasting: config.bitcoin !== null,
      ...(live.rotation ? { rotation: live.rotation } : {}),
    }),
  });
}

/** The member key, the federation it belongs to, and a refusal naming the field when it does not. */
async function memberIdentity(config: Config, env: NodeJS.ProcessEnv) {
  const secretKey = await loadMemberKey(config, env);
  const pubkeys = config.federation.pubkeys.map((k) => Buffer.from(k, 'hex'));
  const federation = buildFederation({ network: config.network, threshold: config.federation.threshold, pubkeys });
  const myKey = schnorrBackend().xonlyPublicKey(secretKey);
  if (memberIndex(federation, myKey) < 0) {
    const field = 'federation.pubkeys';
    throw new ConfigError(`the member key (x-only ${toHex(myKey)}) is not one of federation.pubkeys`, { field });
  }
  return { secretKey, pubkeys, federation, myKey };
}

/** The EVM observer, with the alarm (and self-pause) for requests a reorg orphaned after the federation acted. */
function evmObserver(
  config: Config,
  store: Store,
  handoff: HandoffPolicy | undefined,
  parts: { safety: Safety; log: Logger; onIngested: () => void },
): EvmObserver {
  const { safety, log, onIngested } = parts;
  return new EvmObserver(store, new EvmRpc(config.evm.rpcUrl), {
    network: config.network,
    finality: config.evm.useFinalizedTag ? 'finalized' : { confirmations: config.evm.confirmations },
    ...handoffEvmRange(handoff, config.evm.startBlock),
    bridge: config.evm.bridge,
    log: (event, fields) => (event.endsWith('failed') ? log.warn(event, fields) : log.debug(event, fields)),
    onIngested,
    onOrphaned: async (orphaned) => {
      for (const o of orphaned) {
        const detail = `request ${o.id} was ${o.status} when its EVM block ${o.block} left the chain`;
        await safety.alarm('request_orphaned', detail, { request: o.id });
      }
    },
    onReorgTooDeep: (err) => safety.alarm('evm_reorg_too_deep', err.message, err.details),
  });
}

/** Loops that run until the member stops; stopping waits for each to end. */
function backgroundLoops(cleanup: (() => Promise<void>)[]): {
  add(loop: (signal: AbortSignal) => Promise<void>): void;
} {
  const abort = new AbortController();
  const running: Promise<void>[] = [];
  cleanup.push(async () => {
    abort.abort();
    await Promise.all(running);
  });
  return { add: (loop) => void running.push(loop(abort.signal)) };
}

function logStarted(log: Logger, config: Config, federation: Federation, p2pPort: number, apiPort: number): void {
  log.info('member_started', {
    p2pPort,
    apiPort,
    federation: federation.address,
    threshold: federation.threshold,
    members: federation.pubkeys.length,
    faultTolerance: federationFaultTolerance(federation),
    workers: config.workers,
  });
}

/** The loops that follow Bitcoin Core, every bitcoin.pollMs: settlement, the reserve audit, a rotation's watch. */
function chainLoops(
  config: Config,
  loops: ReturnType<typeof backgroundLoops>,
  log: Logger,
  parts: { store: Store; chain: ChainSide; reserves: ReserveAuditor; handoff: HandoffPolicy | undefined },
): void {
  const { store, chain, reserves, handoff } = parts;
  const b = config.bitcoin;
  if (!b) return;
  const { settlement, rpc } = chain;
  if (settlement) loops.add((signal) => every(b.pollMs, signal, log, 'settlement', () => settlement.tick()));
  loops.add((signal) => every(b.pollMs, signal, log, 'reserves', () => reserves.tick()));
  if (handoff && rpc)
    loops.add((signal) =>
      every(b.pollMs, signal, log, 'handoff', () => watchHandoff(store, handoff, rpc, chain.spendDepth, log)),
    );
}

/** The member's store, refused (closed again) when a rotation plan does not fit what it has read. */
async function openStore(
  config: Config,
  federation: Federation,
  handoff: HandoffPolicy | undefined,
  log: Logger,
): Promise<Store> {
  const store = await Store.open(config.storeDir, { descriptor: federation.descriptor });
  // a member that ran before and now finds an empty store remembers no payment it signed
  if (store.created)
    log.warn('store_created', {
      storeDir: config.storeDir,
      note: 'a new, empty store: if this member ran before, stop it and set storeDir to its store',
    });
  if (handoff)
    await checkHandoffStore(store, handoff).catch(async (err: unknown) => {
      await store.close();
      throw err;
    });
  return store;
}

/** The member's signing pool: a signature that fails its own verification pauses the member. */
function signingPool(
  config: Config,
  federation: Federation,
  secretKey: Uint8Array,
  { safety, log }: { safety: Safety; log: Logger },
): SigningPool {
  return new SigningPool(federation, {
    secretKey,
    size: config.workers,
    onSignFault: pauseOnSignFault(safety, log),
  });
}

export async function startMember(
  config: Config,
  env: NodeJS.ProcessEnv = process.env,
  options: { log?: Logger } = {},
): Promise<Member> {
  const { secretKey, pubkeys, federation, myKey } = await memberIdentity(config, env);
  const handoff = await loadHandoffPolicy(config, federation);
  const log = (options.log ?? createLogger({ level: config.logLevel })).child({ member: toHex(myKey).slice(0, 16) });

  const store = await openStore(config, federation, handoff, log);
  const cleanup: (() => Promise<void>)[] = [() => store.close()];
  const stopAll = async (): Promise<void> => {
    for (const fn of cleanup.reverse()) await fn().catch((err: Error) => log.error('stop_failed', { error: err }));
  };
  try {
    const metrics = createMetrics({ processMetrics: true });
    metrics.memory.watchStore(() => store.memory());
    const safety = new Safety(store, log, metrics);
    await safety.load();
    const pool = signingPool(config, federation, secretKey, { safety, log });
    cleanup.push(() => pool.destroy());
    const network = startLinks(config, secretKey, pubkeys, log);

    const loops = backgroundLoops(cleanup);

    let coordinator: Coordinator | undefined;
    const self = toHex(myKey);
    const limits = outflowLimits(config);
    const outflow = new Outflow(store, self, federation.threshold, pubkeys.map(toHex), limits);
    const peers = (): Coordinator | undefined => coordinator;
    const chain = await startChainSide(config, store, federation, handoff, log, metrics, safety, cleanup, peers);
    const { settlement, recoverInput } = chain;
    const handingOverFrom = handoff?.side === 'to' ? { handingOverFrom: handoff.plan.from.scriptPubKey } : {};
    const reserves = reserveAuditor(config, { store, federation, safety, log, metrics, ...handingOverFrom }, cleanup);

    const evm = evmObserver(config, store, handoff, { safety, log, onIngested: () => coordinator?.ingested() });
    coordinator = new Coordinator({
      store,
      federation,
      pool,
      network,
      log,
      metrics,
      policy: () => signingPolicy(config, chain, self, limits, handoff),
      paidDepth: chain.paidDepth,
      outflow,
      paused: () => safety.paused !== null,
      maxOutputs: config.rounds.maxOutputs,
      slotMs: config.rounds.slotMs,
      catchUp: () => evm.wake(),
      onFinalized: settlement ? settlement.onFinalized : (record) => settleLocally(store, federation, record),
      ...(settlement ? { replacements: settlement.replacements, onLateMatched: settlement.onLateMatched } : {}),
      ...(recoverInput ? { recoverInput } : {}),
    });
    const p2pPort = await network.start();
    cleanup.push(() => network.stop());
    await coordinator.start();
    const c = coordinator;
    cleanup.push(() => c.stop());
    safety.onChange((paused) => c.pauseChanged(paused));
    const operator = await startOperatorSurface(config, federation, { outflow, coordinator, safety, log });
    cleanup.push(() => operator.admin.close());

    loops.add((signal) => evm.run(signal, config.evm.pollMs));
    chainLoops(config, loops, log, { store, chain, reserves, handoff });
    const dropped = new Map<string, number>();
    loops.add((signal) => every(1000, signal, log, 'metrics', () => refreshMetrics(store, metrics, network, dropped)));
    const activity = new Activity(metrics);
    loops.add((signal) => every(ACTIVITY_SAMPLE_MS, signal, log, 'activity', () => activity.sample()));

    const live = {
      safety: operator.health,
      reserves,
      activity,
      ...(handoff ? { rotation: () => handoffSummary(store, handoff) } : {}),
    };
    const api = await startMemberApi(config, store, { federation, key: toHex(myKey) }, network, metrics, live, log);
    cleanup.push(() => api.close());
    logStarted(log, config, federation, p2pPort, api.port);
    return { key: toHex(myKey), federation, p2pPort, apiPort: api.port, stop: stopAll };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
