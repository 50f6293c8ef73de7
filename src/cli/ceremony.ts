import type { Command } from 'commander';
import { equal, fromHexLength, toHex } from '../bitcoin/bytes.js';
import { memberIndex, type Federation } from '../bitcoin/federation.js';
import { allScriptPathSighashes } from '../bitcoin/sighash.js';
import { serializeTx, txid, type Prevout, type Transaction } from '../bitcoin/tx.js';
import { signedFederationVsize } from '../bitcoin/weight.js';
import { isPegoutError } from '../errors.js';
import { checkFinalizedWitnesses, SignatureCollector } from '../signing/collector.js';
import { SigningError } from '../signing/errors.js';
import { readKeyFile } from '../signing/keyfile.js';
import { schnorrBackend } from '../signing/schnorr.js';
import { loadFederation, loadPrevouts, loadTx, readJsonFile } from './inputs.js';
import { CliError, describeError, printResult } from './output.js';
import {
  handoffBoundsOptions,
  loadPlan,
  refuseBoundsWithoutPlan,
  requireHandoff,
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

export function registerCeremony(program: Command): void {
  handoffBoundsOptions(spendOptions(program.command('sign')))
    .description('sign every input of a federation spend with this member\'s key; prints {"pubkey", "signatures"} JSON')
    .requiredOption('--key <file>', 'member key file (mode 0600)')
    .option(
      '--plan <file>',
      'a rotation plan: sign only a handoff under it (to the planned address or back, no request, bounded fee)',
    )
    .option('--deterministic', 'zero auxiliary randomness (tests and vectors only)')
    .action(
      async (
        opts: SpendOptions & HandoffBoundsOptions & { key: string; plan?: string; deterministic?: boolean },
        command: Command,
      ) => {
        if (opts.plan === undefined) refuseBoundsWithoutPlan(command);
        const { federation, tx, prevouts } = await loadSpend(opts);
        // checked before the key is read: a refused spend never touches the secret
        if (opts.plan !== undefined) {
          const plan = await loadPlan(opts.plan);
          const { sent, fee } = requireHandoff(plan, `--plan ${opts.plan}`, federation, tx, prevouts, opts);
          process.stderr.write(
            `signing a handoff under plan ${plan.fingerprint.slice(0, 16)}…: ${sent} sats to the new federation, fee ${fee} sats\n`,
          );
        }
        const secretKey = await readKeyFile(opts.key);
        const backend = schnorrBackend();
        const pubkey = backend.xonlyPublicKey(secretKey);
        if (memberIndex(federation, pubkey) < 0)
          throw new CliError(`--key ${opts.key}: key ${toHex(pubkey)} is not a member of this federation`);
        const sighashes = Buffer.concat(allScriptPathSighashes(tx, prevouts, federation.leafHash));
        const sigs = backend.signBatch(secretKey, sighashes, opts.deterministic ? 'zero' : 'random');
        const signatures = tx.inputs.map((_, i) => toHex(sigs.subarray(i * 64, i * 64 + 64)));
        process.stdout.write(`${JSON.stringify({ pubkey: toHex(pubkey), signatures }, null, 2)}\n`);
      },
    );

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
