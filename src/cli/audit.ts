import type { Command } from 'commander';
import { equal, fromHex, toHex } from '../bitcoin/bytes.js';
import { encodeAddress } from '../bitcoin/address.js';
import { BitcoinError } from '../bitcoin/errors.js';
import type { Federation } from '../bitcoin/federation.js';
import { parseNetwork, type Network } from '../bitcoin/network.js';
import { btcToSats, type BitcoinRpcClient } from '../chain/rpc.js';
import { parseTx, txid as txidOf, type Prevout, type Transaction } from '../bitcoin/tx.js';
import { BRIDGE_ADDRESS, type RawLog } from '../evm/bridge.js';
import { parseRequestId } from '../evm/request-id.js';
import { EvmRpc } from '../evm/rpc.js';
import {
  auditPayment,
  AuditError,
  DEFAULT_MAX_TRIES,
  matchPayment,
  type AuditFault,
  type AuditRequest,
  type PaymentAudit,
} from '../wallet/audit.js';
import { commitsTo } from '../wallet/commitment.js';
import { decideLogs, requestsInBlocks, type DecidedLog } from './evm.js';
import {
  bitcoinClient,
  bitcoinRpcOptions,
  loadFederation,
  loadPrevouts,
  loadTx,
  type BitcoinRpcCliOptions,
} from './inputs.js';
import { CliError, describeError, integerOption, printResult } from './output.js';
import { checkFinalizedWitnesses } from '../signing/collector.js';

/** A request with what an auditor shows of it. */
interface SeenRequest extends AuditRequest {
  readonly evmTx: string;
  readonly address: string;
}

function seen(r: DecidedLog): SeenRequest {
  if ('error' in r) {
    return {
      id: r.id,
      sats: 0n,
      notPayable: `its log does not decode: ${r.error}`,
      evmTx: r.raw.transactionHash,
      address: '?',
    };
  }
  const { log, decision: d } = r;
  const common = { id: r.id, sats: d.sats, evmTx: log.txHash, address: d.bitcoinAddress };
  if (d.status !== 'accepted' || d.scriptPubKey === undefined) {
    return { ...common, notPayable: `the federation rejects it (${d.reason}): ${d.detail}` };
  }
  return { ...common, scriptPubKey: d.scriptPubKey };
}

/** The claimed requests, each read from its EVM transaction's receipt. */
async function claimedRequests(
  rpc: EvmRpc,
  bridge: string,
  network: Network,
  ids: readonly string[],
): Promise<SeenRequest[]> {
  const byTx = new Map<string, Promise<DecidedLog[]>>();
  const read = async (txHash: string): Promise<DecidedLog[]> => {
    const receipt = await rpc.call<{ logs?: RawLog[] } | null>('eth_getTransactionReceipt', [txHash]);
    if (receipt === null) {
      throw new AuditError('unknown_request', `the EVM node ${rpc.where} knows no transaction ${txHash}`, { txHash });
    }
    return decideLogs(receipt.logs ?? [], bridge, network);
  };
  return Promise.all(
    ids.map(async (id) => {
      const { txHash, ordinal } = parseRequestId(id);
      if (!byTx.has(txHash)) byTx.set(txHash, read(txHash));
      const logs = await byTx.get(txHash)!;
      const found = logs.find((r) => r.id === id);
      if (!found) {
        const has = `has ${logs.length} RequestPegOut log(s) from the bridge ${bridge}`;
        throw new AuditError(
          'unknown_request',
          `request ${id}: transaction ${txHash} ${has}, so no ordinal ${ordinal}`,
          { request: id },
        );
      }
      return seen(found);
    }),
  );
}

/** `--requests a,b,c`: canonical ids only, as the commitment hashes them. */
function parseClaimed(text: string): string[] {
  const ids = text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  if (ids.length === 0) {
    throw new CliError(
      `--requests must list request ids (<0x tx hash>:<ordinal>, comma-separated), got ${JSON.stringify(text)}`,
    );
  }
  for (const id of ids) parseRequestId(id);
  return ids;
}

async function paymentByTxid(node: BitcoinRpcClient, txid: string): Promise<Transaction> {
  if (!/^[0-9a-f]{64}$/.test(txid))
    throw new CliError(`--txid must be 64 lowercase hex digits, got ${JSON.stringify(txid)}`);
  const answer = await node.getRawTransaction(txid);
  if (typeof answer.hex !== 'string') {
    throw new BitcoinError(
      'invalid_transaction',
      `getrawtransaction ${txid} on ${node.where} answered without the raw hex`,
    );
  }
  const tx = parseTx(fromHex(answer.hex, `getrawtransaction ${txid}`));
  if (txidOf(tx) !== txid) {
    throw new BitcoinError(
      'invalid_transaction',
      `${node.where} answered transaction ${txidOf(tx)} for --txid ${txid}`,
    );
  }
  return tx;
}

/**
 * What each input spends, read from the transactions that made them (the node needs -txindex, or them in its
 * mempool).
 */
async function prevoutsFromNode(node: BitcoinRpcClient, tx: Transaction): Promise<Prevout[]> {
  const parents = new Map<string, ReturnType<BitcoinRpcClient['getRawTransaction']>>();
  return Promise.all(
    tx.inputs.map(async (input, i) => {
      if (!parents.has(input.txid)) parents.set(input.txid, node.getRawTransaction(input.txid));
      const out = (await parents.get(input.txid)!).vout.find((o) => o.n === input.vout);
      if (!out) {
        const message = `input ${i} spends ${input.txid}:${input.vout}, but that transaction has no output ${input.vout}`;
        throw new BitcoinError('invalid_prevouts', message, { input: i });
      }
      return { value: btcToSats(out.value), scriptPubKey: fromHex(out.scriptPubKey.hex, `input ${i} prevout script`) };
    }),
  );
}

interface AuditOptions extends BitcoinRpcCliOptions {
  tx?: string;
  txid?: string;
  prevouts?: string;
  federation?: string;
  rpc: string;
  bridge: string;
  network: string;
  requests?: string;
  from?: string;
  to?: string;
  maxTries?: string;
  json?: boolean;
}

const sats = (n: bigint | undefined): string | null => (n === undefined ? null : n.toString());

/** The report as JSON: amounts as decimal strings, as every command prints them. */
function describeAudit(
  tx: Transaction,
  audit: PaymentAudit<SeenRequest>,
  network: Network,
  federation: Federation | undefined,
) {
  const { change, fee, vsize } = audit;
  const signed = tx.inputs.some((i) => i.witness.length > 0);
  const feeRate = fee !== undefined && vsize !== undefined ? Number(fee) / vsize : undefined;
  const changeOutput = change.output === undefined ? undefined : tx.outputs[change.output]!;
  return {
    txid: txidOf(tx),
    signed,
    commitment: {
      output: 0,
      committed: audit.commitment.committed ? toHex(audit.commitment.committed) : null,
      expected: toHex(audit.commitment.expected),
      matches: audit.commitment.matches,
    },
    share: sats(audit.share),
    outputs: audit.payouts.map((p) => ({
      output: p.output,
      request: p.request.id,
      evmTx: p.request.evmTx,
      address: p.request.address,
      requested: p.request.sats.toString(),
      paid: sats(p.paid),
      share: sats(p.share),
      exact: p.exact,
    })),
    change: {
      output: change.output ?? null,
      sats: sats(change.value),
      address: changeOutput ? addressOf(changeOutput.scriptPubKey, network) : null,
      checked: change.checked,
      expected: sats(change.expected),
      toFederation: changeOutput && federation ? equal(changeOutput.scriptPubKey, federation.scriptPubKey) : null,
    },
    inputs: sats(audit.inputTotal),
    requested: audit.requested.toString(),
    fee: sats(fee),
    vsize: vsize ?? null,
    feeRate: feeRate === undefined ? null : Number(feeRate.toFixed(3)),
    verdict: { ok: audit.faults.length === 0, faults: audit.faults },
  };
}

function addressOf(script: Uint8Array, network: Network): string {
  try {
    return encodeAddress(script, network);
  } catch {
    return `script ${toHex(script)}`;
  }
}

/** The report as aligned lines: one per output, then the change, the fee and the verdict. */
function asText(report: ReturnType<typeof describeAudit>, audit: PaymentAudit<SeenRequest>): Record<string, string> {
  const k = audit.payouts.length;
  const lines: Record<string, string> = {};
  lines.payment = `${report.txid} (${report.signed ? 'signed' : 'unsigned'})`;
  lines.commitment = audit.commitment.matches
    ? `output 0 = ${report.commitment.expected}: the ${k} request(s) below, in output order`
    : `DOES NOT MATCH: output 0 holds ${report.commitment.committed ?? 'no commitment'}; ` +
      `the requests below hash to ${report.commitment.expected}`;
  for (const p of audit.payouts) {
    const fault = audit.faults.find((f) => f.output === p.output);
    lines[`output ${p.output}`] = [
      p.request.id,
      `evm tx ${p.request.evmTx}`,
      p.request.address,
      `requested ${p.request.sats}`,
      `paid ${p.paid ?? 'nothing'}`,
      `share ${p.share ?? '-'}`,
      p.exact ? 'exact' : `NOT EXACT${fault ? `: ${fault.message}` : ''}`,
    ].join('  ');
  }
  const c = report.change;
  const changeFault = audit.faults.find((f) => f.code === 'change_inexact');
  const found = c.output === null ? 'none' : `output ${c.output}: ${c.sats} sats to ${c.address}`;
  if (changeFault) lines.change = `NOT EXACT: ${changeFault.message}`;
  else if (!c.checked) lines.change = `${found}, not checked (needs the input values and --federation)`;
  else if (c.output === null)
    lines.change = 'none: Σ inputs − Σ requested is under the change dust limit and goes to the miners';
  else
    lines.change = `${found} (the federation), exactly Σ inputs ${audit.inputTotal} − Σ requested ${audit.requested}`;
  const { fee, share } = audit;
  if (fee === undefined) {
    lines.fee = 'unknown: needs the input values (--prevouts, or --bitcoin-rpc)';
  } else {
    const borne = share === undefined ? 0n : BigInt(k) * share;
    const size = `${report.vsize} vB${report.signed ? '' : ' once signed'}`;
    const rate = report.feeRate === null ? '' : `, ${report.feeRate} sat/vB over ${size}`;
    lines.fee = `${fee} sats = ${k} × share ${share ?? '-'} + ${fee - borne} not borne by the shares${rate}`;
  }
  const where = (f: AuditFault): string =>
    f.output !== undefined ? ` (output ${f.output})` : f.input !== undefined ? ` (input ${f.input})` : '';
  lines.verdict =
    audit.faults.length === 0
      ? `ok: the commitment matches and every payout is exactly sats − ${share}; ` +
        (c.checked ? 'the change is exact' : 'the change and the fee are not checked')
      : `FAULTY: ${audit.faults.length} fault(s): ${audit.faults.map((f) => `${f.code}${where(f)}`).join(', ')}`;
  return lines;
}

export function registerAudit(program: Command): void {
  bitcoinRpcOptions(
    program.command('audit'),
    'Bitcoin Core JSON-RPC: fetches --txid and the values of the outputs the payment spends',
  )
    .description(
      'check a federation payment from the chains alone: which requests output 0 commits to, and whether every output pays exactly ' +
        "(the auditor's view; exit 1 when not)",
    )
    .option('--tx <hex>', 'the payment, raw transaction hex')
    .option(
      '--txid <txid>',
      'the payment by txid, from --bitcoin-rpc (which needs -txindex, or the transaction in its mempool)',
    )
    .option(
      '--prevouts <file>',
      'the spent outputs [{value, scriptPubKey}], one per input, when not asking a Bitcoin node',
    )
    .option(
      '--federation <file>',
      "federation file {network, threshold, pubkeys}: checks the inputs and the change are the federation's",
    )
    .requiredOption('--rpc <url>', 'EVM JSON-RPC URL (the sidechain)')
    .option('--bridge <address>', 'bridge contract address', BRIDGE_ADDRESS)
    .requiredOption('--network <network>', 'Bitcoin network the federation pays on')
    .option('--requests <ids>', 'the request ids the payment claims to pay, in output order, comma-separated')
    .option('--from <block>', 'first EVM block to search for the requests paid (with --to)')
    .option('--to <block>', 'last EVM block to search')
    .option(
      '--max-tries <n>',
      'assignments of like requests to outputs hashed before giving up',
      String(DEFAULT_MAX_TRIES),
    )
    .option('--json', 'print JSON')
    .action((opts: AuditOptions) => runAudit(opts));
}

function checkOptions(opts: AuditOptions): void {
  const fault = (message: string): never => {
    throw new CliError(message);
  };
  if ((opts.tx === undefined) === (opts.txid === undefined))
    fault('give the payment with exactly one of --tx HEX or --txid TXID');
  if (opts.txid !== undefined && opts.bitcoinRpc === undefined)
    fault('--txid needs --bitcoin-rpc to fetch the transaction');
  const byRange = opts.from !== undefined || opts.to !== undefined;
  if (byRange === (opts.requests !== undefined))
    fault('give the requests with exactly one of --requests ID,… or --from N --to M');
  if (byRange && (opts.from === undefined || opts.to === undefined)) fault('a block range needs both --from and --to');
}

/** The requests the payment pays, in output order: the claimed ones, or those found in the block range. */
async function requestsPaid(
  opts: AuditOptions,
  tx: Transaction,
  network: Network,
  maxTries: number,
): Promise<readonly SeenRequest[]> {
  const evm = new EvmRpc(opts.rpc);
  if (opts.requests !== undefined) {
    const claimed = parseClaimed(opts.requests);
    const requests = await claimedRequests(evm, opts.bridge, network, claimed);
    // ids given out of output order still name the payment: their order is found by the payouts
    const first = tx.outputs[0];
    if (first && !commitsTo(first.scriptPubKey, claimed)) {
      const found = matchPayment(tx, requests, maxTries);
      if (found && found.requests.length === requests.length) return found.requests;
    }
    return requests;
  }
  const from = integerOption(opts.from!, '--from', 0);
  const to = integerOption(opts.to!, '--to', from);
  const candidates = (await requestsInBlocks(evm, opts.bridge, network, from, to)).map(seen);
  const found = matchPayment(tx, candidates, maxTries);
  if (found) return found.requests;
  const payable = candidates.filter((c) => c.notPayable === undefined).length;
  throw new AuditError(
    'no_match',
    `no set of the ${payable} payable request(s) in blocks ${from}-${to} is what output 0 commits to, with outputs 1..k each ` +
      `paying one exactly sats − share (one share for all; ${maxTries} assignments tried): widen the range, or name the ` +
      'requests with --requests to see which output is wrong',
  );
}

/**
 * The input values a file states for `tx`, once a signed payment's own signatures commit to them
 * (BIP341 signs every spent amount and script). Believed, a file that understated an input made a
 * payment look exact whose real fee was the difference; an unsigned one's values go as stated.
 */
function signedWith(
  tx: Transaction,
  prevouts: Prevout[],
  source: string,
  federation: Federation | undefined,
): Prevout[] {
  if (!tx.inputs.some((i) => i.witness.length > 0)) return prevouts;
  if (federation === undefined)
    throw new CliError(
      `--prevouts with a signed payment needs --federation: its signatures are checked against ${source}`,
    );
  try {
    checkFinalizedWitnesses(tx, prevouts, federation);
  } catch (err) {
    throw new AuditError(
      'prevouts_unsigned',
      `--prevouts ${source}: the payment's own signatures do not commit to these input values and scripts (${describeError(err)}); they are not what its inputs hold`,
    );
  }
  return prevouts;
}

async function runAudit(opts: AuditOptions): Promise<void> {
  const network = parseNetwork(opts.network, '--network');
  checkOptions(opts);
  const maxTries = integerOption(opts.maxTries ?? String(DEFAULT_MAX_TRIES), '--max-tries', 1);
  const federation = opts.federation === undefined ? undefined : await loadFederation(opts.federation, '--federation');
  if (federation && federation.network !== network) {
    throw new CliError(
      `--federation ${opts.federation} is a ${federation.network} federation, but --network is ${network}`,
    );
  }
  const node = opts.bitcoinRpc === undefined ? undefined : bitcoinClient(opts.bitcoinRpc, opts);
  try {
    const tx = opts.tx !== undefined ? loadTx(opts.tx) : await paymentByTxid(node!, opts.txid!);
    // the spent values: from the file, else from the node; without either the change and fee go unchecked
    const prevouts =
      opts.prevouts !== undefined
        ? signedWith(tx, await loadPrevouts(opts.prevouts, tx), opts.prevouts, federation)
        : node
          ? await prevoutsFromNode(node, tx)
          : undefined;
    const requests = await requestsPaid(opts, tx, network, maxTries);
    const audit = auditPayment(tx, requests, {
      ...(federation ? { federation } : {}),
      ...(prevouts ? { prevouts } : {}),
    });
    const report = describeAudit(tx, audit, network, federation);
    printResult(opts.json ? report : asText(report, audit), Boolean(opts.json));
    const [first, ...more] = audit.faults;
    if (first) {
      const all = `${audit.faults.length} faults: ${audit.faults.map((f) => f.message).join('; ')}`;
      throw new AuditError(first.code, more.length === 0 ? first.message : all);
    }
  } finally {
    node?.close();
  }
}
