import type { Command } from 'commander';
import { toHex } from '../bitcoin/bytes.js';
import { federationFaultTolerance, type Federation } from '../bitcoin/federation.js';
import { MAX_MONEY, serializeTx, txid, type Prevout } from '../bitcoin/tx.js';
import { rawDescriptor, type ScannedOutput } from '../chain/rpc.js';
import { WalletError } from '../wallet/errors.js';
import {
  buildSweeps,
  buildTestSpend,
  checkHandoffTx,
  DEFAULT_MAX_HANDOFF_FEE,
  handoffSent,
  makeRotationPlan,
  parseRotationPlan,
  rotationPlanFile,
  type HandoffTx,
  type RotationPlan,
} from '../wallet/handoff.js';
import type { SpendableUtxo } from '../wallet/payment.js';
import { bitcoinClient, bitcoinRpcOptions, loadFederation, readJsonFile, type BitcoinRpcCliOptions } from './inputs.js';
import { CliError, integerOption, printResult, writeOutFile } from './output.js';

// `pegout rotation`: the membership change's plan, its state on Bitcoin, and the handoff's
// transactions built offline (issue 17; docs/rotation.md). Members sign them with
// `pegout sign --plan`, which refuses anything that is not a handoff under that plan.

export async function loadPlan(path: string, option = '--plan'): Promise<RotationPlan> {
  return parseRotationPlan(await readJsonFile(path, option), `${option} ${path}`);
}

function describeSide(federation: Federation): Record<string, unknown> {
  return {
    threshold: federation.threshold,
    members: federation.pubkeys.length,
    address: federation.address,
    descriptor: federation.descriptor,
    faultTolerance: federationFaultTolerance(federation).statement,
  };
}

/** Both federations side by side: nested in JSON, one line a field in text. */
function describePlan(plan: RotationPlan, json: boolean): Record<string, unknown> {
  const head = {
    fingerprint: plan.fingerprint,
    network: plan.from.network,
    activationHeight: plan.activationHeight,
    evmBoundary: plan.evmBoundary,
  };
  if (json) return { ...head, from: describeSide(plan.from), to: describeSide(plan.to) };
  const lines: Record<string, unknown> = { ...head };
  for (const [side, federation] of [
    ['from', plan.from],
    ['to', plan.to],
  ] as const) {
    lines[side] = `${federation.threshold}-of-${federation.pubkeys.length} at ${federation.address}`;
    lines[`${side} descriptor`] = federation.descriptor;
    lines[`${side} tolerates`] = federationFaultTolerance(federation).statement;
  }
  return lines;
}

export function satsOption(value: string, option: string): bigint {
  return BigInt(integerOption(value, option, 1));
}

function rateOption(value: string, option: string): number {
  const rate = Number(value);
  if (!/^\d+(\.\d{1,3})?$/.test(value.trim()) || !(rate > 0) || rate > 1_000_000)
    throw new CliError(
      `${option} must be a fee rate in sat/vB, above 0 and at most 1000000, with at most 3 decimals, got ${JSON.stringify(value)}`,
    );
  return rate;
}

/** `[{txid, vout, value}]`, as `rotation status --json` lists an address's outputs. */
async function loadUtxos(path: string, owner: Federation): Promise<SpendableUtxo[]> {
  const json = await readJsonFile(path, '--utxos');
  if (!Array.isArray(json)) throw new CliError(`--utxos ${path}: expected a JSON array of {txid, vout, value}`);
  const seen = new Set<string>();
  return json.map((entry: unknown, i) => {
    const e = entry as { txid?: unknown; vout?: unknown; value?: unknown } | null;
    const where = `--utxos ${path}: [${i}]`;
    if (typeof e?.txid !== 'string' || !/^[0-9a-f]{64}$/.test(e.txid))
      throw new CliError(`${where}.txid must be 64 lowercase hex digits, got ${JSON.stringify(e?.txid)}`);
    // the outpoint holds vout in 32 bits: a larger one would wrap to another output
    if (!Number.isInteger(e.vout) || (e.vout as number) < 0 || (e.vout as number) > 0xffffffff)
      throw new CliError(`${where}.vout must be an integer from 0 to 4294967295, got ${JSON.stringify(e.vout)}`);
    // a number past 2^53 has already been rounded by JSON.parse; a decimal string is exact
    const text = typeof e.value === 'string' || Number.isSafeInteger(e.value) ? String(e.value) : '';
    const value = /^\d+$/.test(text) ? BigInt(text) : 0n;
    if (value < 1n || value > MAX_MONEY)
      throw new CliError(
        `${where}.value must be an integer number of satoshis from 1 to ${MAX_MONEY} (21,000,000 BTC), got ${JSON.stringify(e.value)}`,
      );
    const name = `${e.txid}:${e.vout as number}`;
    if (seen.has(name)) throw new CliError(`${where}: ${name} is listed twice`);
    seen.add(name);
    return { txid: e.txid, vout: e.vout as number, value, scriptPubKey: owner.scriptPubKey };
  });
}

function txJson(h: HandoffTx): Record<string, unknown> {
  const prevouts = h.prevouts.map((p) => ({ value: Number(p.value), scriptPubKey: toHex(p.scriptPubKey) }));
  return {
    kind: h.kind,
    txid: txid(h.tx),
    tx: toHex(serializeTx(h.tx)),
    prevouts,
    inputs: h.tx.inputs.length,
    vsize: h.vsize,
    fee: Number(h.fee),
    sent: Number(h.sent),
    kept: Number(h.kept),
  };
}

function outputsJson(outputs: readonly ScannedOutput[]): Record<string, unknown>[] {
  return outputs.map((o) => ({ txid: o.txid, vout: o.vout, value: Number(o.value), height: o.height }));
}

/** What the handoff has come to, from the tip and what each address holds. */
function handoffState(
  plan: RotationPlan,
  tip: number,
  old: readonly ScannedOutput[],
  next: readonly ScannedOutput[],
): string {
  const sum = (list: readonly ScannedOutput[]): bigint => list.reduce((a, o) => a + o.value, 0n);
  if (tip < plan.activationHeight)
    return `planned: activates at block ${plan.activationHeight}, in ${plan.activationHeight - tip} block(s)`;
  if (old.length > 0 && next.length === 0)
    return `activated, no test spend yet: the old address holds ${sum(old)} sats in ${old.length} output(s)`;
  if (old.length > 0)
    return `handing over: the old address still holds ${sum(old)} sats in ${old.length} output(s); the new one ${sum(next)} sats`;
  return `done: the old address is empty at block ${tip}; the new federation holds ${sum(next)} sats in ${next.length} output(s)`;
}

/** What `pegout sign --plan` holds a handoff to: the plan the members agreed, what it may send, its fee. */
export interface HandoffBoundsOptions {
  minFeeRate: string;
  maxFeeRate: string;
  maxFee: string;
  /** Required with --plan: a plan file that changed since the members compared fingerprints is refused. */
  fingerprint?: string;
  maxSent?: string;
}

const BOUND_FLAGS: Readonly<Record<keyof HandoffBoundsOptions, string>> = {
  minFeeRate: '--min-fee-rate',
  maxFeeRate: '--max-fee-rate',
  maxFee: '--max-fee',
  fingerprint: '--fingerprint',
  maxSent: '--max-sent',
};

export function handoffBoundsOptions(command: Command): Command {
  return command
    .option(`${BOUND_FLAGS.minFeeRate} <sat/vB>`, 'with --plan: refuse a handoff paying less (the relay floor)', '1')
    .option(`${BOUND_FLAGS.maxFeeRate} <sat/vB>`, 'with --plan: refuse a handoff paying more', '100')
    .option(
      `${BOUND_FLAGS.maxFee} <sats>`,
      'refuse a spend whose fee is over this (a handoff with --plan, any spend without)',
      String(DEFAULT_MAX_HANDOFF_FEE),
    )
    .option(
      `${BOUND_FLAGS.fingerprint} <hex>`,
      "with --plan, required: the plan's fingerprint as the members read it to each other (all 64 hex digits; `pegout rotation plan` prints it); a plan file that differs is refused",
    )
    .option(
      `${BOUND_FLAGS.maxSent} <sats>`,
      'with --plan: refuse a handoff sending more than this to the new federation; give the test amount when signing the test spend, since nothing has proven yet that the new set can sign',
    );
}

/**
 * Refuses a check of a handoff the operator gave without --plan: only a handoff under a plan is
 * checked, so the bound would be believed and not held. --max-fee bounds any spend.
 */
export function refuseBoundsWithoutPlan(command: Command): void {
  for (const [name, flag] of Object.entries(BOUND_FLAGS)) {
    if (name !== 'maxFee' && command.getOptionValueSource(name) === 'cli')
      throw new CliError(
        `${flag} ${String(command.getOptionValue(name))}: a check of a handoff needs --plan (only a handoff under a plan is checked); give --plan or leave ${flag} out`,
      );
  }
}

/** The plan file is the one the members agreed: its fingerprint starts with what they read to each other. */
function requireAgreedPlan(plan: RotationPlan, planSource: string, fingerprint: string | undefined): void {
  if (fingerprint === undefined)
    throw new CliError(
      "--plan needs --fingerprint <hex>: the plan's fingerprint as the members agreed it (pegout rotation plan prints it)",
    );
  // all of it: a prefix of 16 digits is 64 bits, which a plan to another federation, its unused
  // fields varied, can be ground to match
  if (!/^[0-9a-fA-F]{64}$/.test(fingerprint))
    throw new CliError(`--fingerprint ${fingerprint}: expected the plan's whole fingerprint, 64 hex digits`);
  if (plan.fingerprint !== fingerprint.toLowerCase())
    throw new CliError(
      `${planSource}: its fingerprint ${plan.fingerprint} is not the agreed ${fingerprint.toLowerCase()}; nothing is signed under a plan file that differs`,
    );
}

/**
 * Refuses, with the verdict's code and reason, a spend that is not a handoff under the agreed
 * `plan` within `opts`; else what it sends to the new federation and its fee.
 */
export function requireHandoff(
  plan: RotationPlan,
  planSource: string,
  spender: Federation,
  tx: Parameters<typeof checkHandoffTx>[0],
  prevouts: readonly Prevout[],
  opts: HandoffBoundsOptions,
): { sent: bigint; fee: bigint } {
  requireAgreedPlan(plan, planSource, opts.fingerprint);
  const refuse = (reason: string, detail: string): never => {
    throw new WalletError(
      'invalid_proposal',
      `not a handoff under plan ${plan.fingerprint.slice(0, 16)}…: ${reason}: ${detail}`,
      {
        reason,
      },
    );
  };
  const verdict = checkHandoffTx(tx, prevouts, plan, spender, {
    floor: rateOption(opts.minFeeRate, BOUND_FLAGS.minFeeRate),
    maxRate: rateOption(opts.maxFeeRate, BOUND_FLAGS.maxFeeRate),
    maxFee: satsOption(opts.maxFee, BOUND_FLAGS.maxFee),
  });
  if (!verdict.ok) refuse(verdict.reason, verdict.detail);
  const sent = handoffSent(tx, plan);
  if (opts.maxSent !== undefined && sent > satsOption(opts.maxSent, BOUND_FLAGS.maxSent))
    refuse('handoff_over_max_sent', `it sends ${sent} sats to the new federation, over --max-sent ${opts.maxSent}`);
  const spent = prevouts.reduce((sum, p) => sum + p.value, 0n);
  return { sent, fee: spent - tx.outputs.reduce((sum, o) => sum + o.value, 0n) };
}

export function registerRotation(program: Command): void {
  const rotation = program
    .command('rotation')
    .description('membership change: agree a plan, watch the handoff, build its transactions (docs/rotation.md)');

  registerPlan(rotation);
  registerStatus(rotation);
  registerSweep(rotation);
}

function registerPlan(rotation: Command): void {
  rotation
    .command('plan')
    .description(
      'write the rotation plan every member loads, and show both federations and its fingerprint to compare out of band',
    )
    .requiredOption('--from <file>', 'the federation file of the current (old) member set')
    .requiredOption('--to <file>', 'the federation file of the new member set (`pegout federation --out`)')
    .requiredOption('--activation-height <height>', 'the Bitcoin block height from which the old set hands over')
    .requiredOption(
      '--evm-boundary <block>',
      'the first EVM block whose requests the new set pays (the old set pays every request below it); a block already final',
    )
    .option('--out <file>', 'write the plan file')
    .option('--json', 'print JSON')
    .action(
      async (opts: {
        from: string;
        to: string;
        activationHeight: string;
        evmBoundary: string;
        out?: string;
        json?: boolean;
      }) => {
        const points = {
          activationHeight: integerOption(opts.activationHeight, '--activation-height', 1, 0xffffffff),
          evmBoundary: integerOption(opts.evmBoundary, '--evm-boundary', 1),
        };
        const from = await loadFederation(opts.from, '--from');
        const plan = makeRotationPlan(from, await loadFederation(opts.to, '--to'), points, '--to');
        if (opts.out) await writeOutFile(opts.out, rotationPlanFile(plan), 'a plan');
        printResult(describePlan(plan, Boolean(opts.json)), Boolean(opts.json));
      },
    );
}

function registerStatus(rotation: Command): void {
  bitcoinRpcOptions(
    rotation
      .command('status')
      .description("show the plan and, asked of Bitcoin Core, the handoff's state and what each address holds"),
    'Bitcoin Core JSON-RPC: scans both addresses (scantxoutset) and reads the tip',
  )
    .requiredOption('--plan <file>', 'the rotation plan file')
    .option('--json', "print JSON (the old address's outputs are what `rotation sweep --utxos` takes)")
    .action(async (opts: BitcoinRpcCliOptions & { plan: string; json?: boolean }) => {
      const plan = await loadPlan(opts.plan);
      const described = describePlan(plan, Boolean(opts.json));
      if (opts.bitcoinRpc === undefined) {
        printResult({ ...described, state: 'unknown: give --bitcoin-rpc to read the chain' }, Boolean(opts.json));
        return;
      }
      const node = bitcoinClient(opts.bitcoinRpc, opts, 600_000);
      try {
        const scan = await node.scanTxOutSet([
          rawDescriptor(plan.from.scriptPubKey),
          rawDescriptor(plan.to.scriptPubKey),
        ]);
        const fromHex = toHex(plan.from.scriptPubKey);
        const old = scan.outputs.filter((o) => o.scriptPubKey === fromHex);
        const next = scan.outputs.filter((o) => o.scriptPubKey !== fromHex);
        printResult(
          {
            ...described,
            tip: scan.height,
            state: handoffState(plan, scan.height, old, next),
            old: { sats: Number(old.reduce((a, o) => a + o.value, 0n)), outputs: outputsJson(old) },
            new: { sats: Number(next.reduce((a, o) => a + o.value, 0n)), outputs: outputsJson(next) },
          },
          Boolean(opts.json),
        );
      } finally {
        node.close();
      }
    });
}

function registerSweep(rotation: Command): void {
  rotation
    .command('sweep')
    .description(
      'build the unsigned handoff transactions (the test spend, or sweeps of every output) for `pegout sign --plan`; prints JSON',
    )
    .requiredOption('--plan <file>', 'the rotation plan file')
    .requiredOption(
      '--utxos <file>',
      'the outputs to spend, [{txid, vout, value}] (as `rotation status --json` lists them)',
    )
    .requiredOption('--fee-rate <sat/vB>', 'the fee rate to pay; the federation pays the fee')
    .option(
      '--spender <side>',
      'whose outputs they are: from (the old set) or to (the new set, sweeping its test output back to itself)',
      'from',
    )
    .option(
      '--test-amount <sats>',
      'build the test spend instead: this much to the new address, the rest back to the old',
    )
    .option(
      '--max-fee <sats>',
      'no transaction pays more fee than this; larger sets are split',
      String(DEFAULT_MAX_HANDOFF_FEE),
    )
    .action(
      async (opts: {
        plan: string;
        utxos: string;
        feeRate: string;
        spender: string;
        testAmount?: string;
        maxFee: string;
      }) => {
        const plan = await loadPlan(opts.plan);
        if (opts.spender !== 'from' && opts.spender !== 'to')
          throw new CliError(`--spender must be from or to, got ${JSON.stringify(opts.spender)}`);
        const spender = opts.spender === 'from' ? plan.from : plan.to;
        const utxos = await loadUtxos(opts.utxos, spender);
        const rate = rateOption(opts.feeRate, '--fee-rate');
        if (opts.testAmount !== undefined) {
          if (opts.spender !== 'from')
            throw new CliError('--test-amount is a spend of the old set: it needs --spender from');
          const test = buildTestSpend(utxos, satsOption(opts.testAmount, '--test-amount'), rate, plan);
          if (!test)
            throw new CliError(
              `--utxos ${opts.utxos}: no single output covers ${opts.testAmount} sats, the fee and a change above dust`,
            );
          printResult({ plan: plan.fingerprint, transactions: [txJson(test)], left: [] }, true);
          return;
        }
        const { sweeps, left } = buildSweeps(utxos, rate, plan, spender, satsOption(opts.maxFee, '--max-fee'));
        printResult({ plan: plan.fingerprint, transactions: sweeps.map(txJson), left }, true);
      },
    );
}
