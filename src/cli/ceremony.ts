import type { Command } from 'commander';
import { decodeAddress, encodeAddress } from '../bitcoin/address.js';
import { equal, fromHexLength, toHex } from '../bitcoin/bytes.js';
import { memberIndex, type Federation } from '../bitcoin/federation.js';
import { allScriptPathSighashes } from '../bitcoin/sighash.js';
import { serializeTx, spendFee, txid, type Prevout, type Transaction } from '../bitcoin/tx.js';
import { signedFederationVsize } from '../bitcoin/weight.js';
import { isPegoutError } from '../errors.js';
import { checkFinalizedWitnesses, SignatureCollector } from '../signing/collector.js';
import { SigningError } from '../signing/errors.js';
import { readKeyFile } from '../signing/keyfile.js';
import { schnorrBackend } from '../signing/schnorr.js';
import { readCommitment } from '../wallet/commitment.js';
import { loadFederation, loadPrevouts, loadTx, readJsonFile } from './inputs.js';
import { CliError, describeError, printResult } from './output.js';
import {
  handoffBoundsOptions,
  loadPlan,
  refuseBoundsWithoutPlan,
  requireHandoff,
  satsOption,
  type HandoffBoundsOptions,
} from './rotation.js';

// The offline ceremony: each member signs on its own machine, anyone assembles the result.
// It is the disaster-recovery path when the service cannot run, and uses the same code.

interface SpendOptions {
  federation: string;
  tx: string;
  prevouts: string;
}

async function loadSpend(
  opts: SpendOptions,
): Promise<{ federation: Federation; tx: Transaction; prevouts: Prevout[] }> {
  const federation = await loadFederation(opts.federation, '--federation');
  const tx = loadTx(opts.tx);
  const prevouts = await loadPrevouts(opts.prevouts, tx);
  prevouts.forEach((p, i) => {
    if (!equal(p.scriptPubKey, federation.scriptPubKey))
      throw new CliError(
        `--prevouts: input ${i} does not spend the federation output script ${toHex(federation.scriptPubKey)}`,
      );
  });
  return { federation, tx, prevouts };
}

/** `pegout sign` without --plan: what the operator states the spend may do. */
interface StatedSpend {
  to?: string[];
  maxFee: string;
}

/**
 * What `tx` does, one line for the operator: each output and the fee. Shown before the key is read,
 * whether or not it is then signed.
 */
function describeSpend(federation: Federation, tx: Transaction, prevouts: readonly Prevout[]): string {
  const input = prevouts.reduce((a, p) => a + p.value, 0n);
  const fee = spendFee(tx, prevouts);
  const outputs = tx.outputs.map((o, i) => {
    if (equal(o.scriptPubKey, federation.scriptPubKey)) return `output ${i}: ${o.value} sats back to the federation`;
    if (readCommitment(o.scriptPubKey)) return `output ${i}: ${o.value} sats, a request commitment`;
    let to: string;
    try {
      to = encodeAddress(o.scriptPubKey, federation.network);
    } catch {
      to = `script ${toHex(o.scriptPubKey)}`;
    }
    return `output ${i}: ${o.value} sats to ${to}`;
  });
  const vsize = signedFederationVsize(federation, tx);
  return `${tx.inputs.length} input(s), ${input} sats; ${outputs.join('; ')}; fee ${fee} sats (${(Number(fee) / vsize).toFixed(1)} sat/vB at ${vsize} vB signed)`;
}

/**
 * Refuses a spend the operator did not state: every output pays the federation, is output 0's
 * request commitment of no value, or pays an address of `--to`; the fee is at most `--max-fee`.
 * Without them the command would sign whatever the file it was handed says (funds to anyone,
 * or to the miners).
 */
function requireStatedSpend(
  federation: Federation,
  tx: Transaction,
  prevouts: readonly Prevout[],
  opts: StatedSpend,
): void {
  if (opts.to === undefined || opts.to.length === 0)
    throw new CliError(
      'sign without --plan needs --to <address...>: the addresses this spend may pay, other than the federation itself (each output is checked against them before the key is read)',
    );
  const allowed = opts.to.map((a) => decodeAddress(a, federation.network).scriptPubKey);
  const maxFee = satsOption(opts.maxFee, '--max-fee');
  for (const [i, o] of tx.outputs.entries()) {
    if (equal(o.scriptPubKey, federation.scriptPubKey) || allowed.some((s) => equal(s, o.scriptPubKey))) continue;
    if (i === 0 && o.value === 0n && readCommitment(o.scriptPubKey)) continue;
    throw new CliError(
      `--tx: output ${i} (${o.value} sats, script ${toHex(o.scriptPubKey)}) pays none of --to and not the federation; nothing is signed`,
    );
  }
  const fee = spendFee(tx, prevouts);
  if (fee < 0n)
    throw new CliError(`--tx: its outputs are worth ${-fee} sats more than --prevouts says its inputs hold`);
  if (fee > maxFee) throw new CliError(`--tx: its fee is ${fee} sats, over --max-fee ${maxFee}; nothing is signed`);
}

function spendOptions(command: Command): Command {
  return command
    .requiredOption(
      '--federation <file>',
      'federation file {network, threshold, pubkeys} (from `pegout federation --out`)',
    )
    .requiredOption('--tx <hex>', 'the unsigned transaction, hex')
    .requiredOption(
      '--prevouts <file>',
      'JSON array, one {"value": sats, "scriptPubKey": hex} per input, in input order',
    );
}

/** Reads one `pegout sign` output and adds its set; every refusal is a PegoutError naming the file. */
async function addSignatureFile(collector: SignatureCollector, id: string, file: string): Promise<void> {
  const json = (await readJsonFile(file, '--signatures')) as { pubkey?: unknown; signatures?: unknown } | null;
  if (
    typeof json?.pubkey !== 'string' ||
    !Array.isArray(json.signatures) ||
    !json.signatures.every((s): s is string => typeof s === 'string')
  )
    throw new CliError(`--signatures ${file}: expected {"pubkey": hex, "signatures": [hex, …]}`);
  const pubkey = fromHexLength(json.pubkey, 32, `--signatures ${file}: pubkey`);
  const signatures = json.signatures.map((s, i) => fromHexLength(s, 64, `--signatures ${file}: signatures[${i}]`));
  try {
    await collector.add(id, { pubkey, signatures });
  } catch (err) {
    if (!(err instanceof SigningError)) throw err;
    throw new CliError(`--signatures ${file}: ${describeError(err)}`);
  }
}

type SignOptions = SpendOptions &
  HandoffBoundsOptions &
  StatedSpend & { key: string; plan?: string; deterministic?: boolean };

/** `pegout sign`: what it signs is shown, then checked (a handoff under --plan, or the stated spend), before the key */
async function signSpend(opts: SignOptions, command: Command): Promise<void> {
  if (opts.plan === undefined) refuseBoundsWithoutPlan(command);
  else if (opts.to !== undefined)
    throw new CliError('--to: with --plan the plan names where a handoff goes; leave --to out');
  const { federation, tx, prevouts } = await loadSpend(opts);
  // shown and checked before the key is read: a refused spend never touches the secret
  process.stderr.write(`spend: ${describeSpend(federation, tx, prevouts)}\n`);
  if (opts.plan !== undefined) {
    const plan = await loadPlan(opts.plan);
    const { sent, fee } = requireHandoff(plan, `--plan ${opts.plan}`, federation, tx, prevouts, opts);
    process.stderr.write(
      `signing a handoff under plan ${plan.fingerprint}: ${sent} sats to the new federation (${plan.to.threshold}-of-${plan.to.pubkeys.length}, ${plan.to.address}), fee ${fee} sats\n`,
    );
  } else requireStatedSpend(federation, tx, prevouts, opts);
  const secretKey = await readKeyFile(opts.key);
  const backend = schnorrBackend();
  const pubkey = backend.xonlyPublicKey(secretKey);
  if (memberIndex(federation, pubkey) < 0)
    throw new CliError(`--key ${opts.key}: key ${toHex(pubkey)} is not a member of this federation`);
  const sighashes = Buffer.concat(allScriptPathSighashes(tx, prevouts, federation.leafHash));
  const sigs = backend.signBatch(secretKey, sighashes, opts.deterministic ? 'zero' : 'random');
  const signatures = tx.inputs.map((_, i) => toHex(sigs.subarray(i * 64, i * 64 + 64)));
  process.stdout.write(`${JSON.stringify({ pubkey: toHex(pubkey), signatures }, null, 2)}\n`);
}

export function registerCeremony(program: Command): void {
  handoffBoundsOptions(spendOptions(program.command('sign')))
    .description('sign every input of a federation spend with this member\'s key; prints {"pubkey", "signatures"} JSON')
    .requiredOption('--key <file>', 'member key file (mode 0600)')
    .option(
      '--plan <file>',
      'a rotation plan: sign only a handoff under it (to the planned address or back, no request, bounded fee)',
    )
    .option(
      '--to <addresses...>',
      'without --plan, required: the addresses this spend may pay besides the federation; any other output is refused before the key is read',
    )
    .option('--deterministic', 'zero auxiliary randomness (tests and vectors only)')
    .action(signSpend);

  spendOptions(program.command('finalize'))
    .description("assemble t members' signature files into the signed transaction; prints its hex")
    .requiredOption(
      '--signatures <files...>',
      'signature files as `pegout sign` writes them; one it cannot take is named and skipped',
    )
    .option('--json', 'print JSON {txid, vsize, hex}')
    .action(async (opts: SpendOptions & { signatures: string[]; json?: boolean }) => {
      const { federation, tx, prevouts } = await loadSpend(opts);
      // anyone can write a file under any key, so a forged one tells nothing of the member it names
      const collector = new SignatureCollector(federation, undefined, false);
      const id = collector.open(tx, prevouts);
      const skipped: string[] = [];
      for (const file of opts.signatures) {
        try {
          await addSignatureFile(collector, id, file);
        } catch (err) {
          // one bad or hostile file must not stop the ceremony while t good ones are there
          if (!isPegoutError(err)) throw err;
          process.stderr.write(`${err.message}; skipped\n`);
          skipped.push(file);
        }
      }
      const have = collector.count(id);
      if (have < federation.threshold)
        throw new SigningError(
          'not_enough_signatures',
          `${have} valid signature set(s), need ${federation.threshold}; skipped ${skipped.join(', ') || 'none'}`,
          { have, need: federation.threshold, skipped },
        );
      const signed = collector.finalize(id);
      checkFinalizedWitnesses(signed, prevouts, federation);
      const hex = toHex(serializeTx(signed));
      if (opts.json) printResult({ txid: txid(signed), vsize: signedFederationVsize(federation, signed), hex }, true);
      else process.stdout.write(`${hex}\n`);
    });

  spendOptions(program.command('verify'))
    .description('check a signed federation spend: witness structure and exactly t valid signatures on every input')
    .option('--json', 'print JSON')
    .action(async (opts: SpendOptions & { json?: boolean }) => {
      const { federation, tx, prevouts } = await loadSpend(opts);
      checkFinalizedWitnesses(tx, prevouts, federation);
      printResult(
        { ok: true, txid: txid(tx), inputs: tx.inputs.length, threshold: federation.threshold },
        Boolean(opts.json),
      );
    });
}
