import type { Command } from 'commander';
import { toHex } from '../bitcoin/bytes.js';
import { generateSecretKey, writeKeyFile } from '../signing/keyfile.js';
import { schnorrBackend } from '../signing/schnorr.js';
import { printResult } from './output.js';

export function registerKeygen(program: Command): void {
  program
    .command('keygen')
    .description(
      'generate a member key: writes the secret to FILE (mode 0600, never overwrites) and prints the x-only public key',
    )
    .requiredOption('--out <file>', 'where to write the key file {"secretKey": hex}')
    .option('--json', 'print JSON')
    .action(async (opts: { out: string; json?: boolean }) => {
      const secretKey = generateSecretKey();
      await writeKeyFile(opts.out, secretKey);
      printResult({ pubkey: toHex(schnorrBackend().xonlyPublicKey(secretKey)), keyFile: opts.out }, Boolean(opts.json));
    });
}
