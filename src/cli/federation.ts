import type { Command } from 'commander';
import { fromHexLength, toHex } from '../bitcoin/bytes.js';
import {
  buildFederation,
  defaultThreshold,
  federationFaultTolerance,
  federationFile,
  type Federation,
} from '../bitcoin/federation.js';
import { parseNetwork } from '../bitcoin/network.js';
import { integerOption, printResult, writeOutFile } from './output.js';

export function describeFederation(federation: Federation): Record<string, unknown> {
  return {
    network: federation.network,
    threshold: federation.threshold,
    members: federation.pubkeys.length,
    faultTolerance: federationFaultTolerance(federation),
    descriptor: federation.descriptor,
    address: federation.address,
    scriptPubKey: toHex(federation.scriptPubKey),
    tapscript: toHex(federation.tapscript),
    controlBlock: toHex(federation.controlBlock),
  };
}

export function registerFederation(program: Command): void {
  program
    .command('federation')
    .description(
      "derive the federation's taproot address, output descriptor (watch it with any descriptor wallet), script and control block from the member keys",
    )
    .requiredOption('--pubkey <hex...>', "members' 32-byte x-only public keys, hex (repeat or list them)")
    .requiredOption('--network <network>', 'mainnet, testnet, signet or regtest')
    .option('--threshold <t>', 'signatures needed (default: floor(2n/3)+1)')
    .option(
      '--out <file>',
      'also write a federation file {network, threshold, pubkeys} for --federation options (never overwrites one)',
    )
    .option('--json', 'print JSON')
    .action(async (opts: { pubkey: string[]; network: string; threshold?: string; out?: string; json?: boolean }) => {
      const pubkeys = opts.pubkey.map((k, i) => fromHexLength(k, 32, `--pubkey #${i + 1}`));
      const threshold =
        opts.threshold === undefined
          ? defaultThreshold(pubkeys.length)
          : integerOption(opts.threshold, '--threshold', 1);
      const federation = buildFederation({ network: parseNetwork(opts.network, '--network'), threshold, pubkeys });
      if (opts.out) await writeOutFile(opts.out, federationFile(federation), 'a federation file');
      const described = describeFederation(federation);
      // one readable line in text; the numbers as fields in JSON
      const text = { ...described, faultTolerance: federationFaultTolerance(federation).statement };
      printResult(opts.json ? described : text, Boolean(opts.json));
    });
}
