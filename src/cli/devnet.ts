import { randomBytes } from 'node:crypto';
import type { Command } from 'commander';
import { toHex } from '../bitcoin/bytes.js';
import { buildFederation, defaultThreshold } from '../bitcoin/federation.js';
import { serializeTx, txid, type Prevout, type Transaction } from '../bitcoin/tx.js';
import { signedFederationVsize } from '../bitcoin/weight.js';
import { checkFinalizedWitnesses, SignatureCollector } from '../signing/collector.js';
import { SigningPool } from '../signing/pool.js';
import { schnorrBackend } from '../signing/schnorr.js';
import { generateSecretKey } from './keygen.js';
import { integerOption } from './output.js';

// Until the member service exists, the devnet runs the signing engine end to end: n member
// keys, a t-of-n federation, one federation output that the devnet declares (it exists on no
// chain), t members signing through their worker pools, finalization and the witness check.

function step(text: string): void {
  process.stdout.write(`• ${text}\n`);
}

export function registerDevnet(program: Command): void {
  program
    .command('devnet')
    .description('run a local federation end to end (for now: the signing engine, offline, with a declared federation output that exists on no chain)')
    .option('--members <n>', 'federation members', '3')
    .option('--threshold <t>', 'signatures needed (default: floor(2n/3)+1)')
    .option('--inputs <k>', 'declared federation outputs the payment spends', '4')
    .action(async (opts: { members: string; threshold?: string; inputs: string }) => {
      const n = integerOption(opts.members, '--members', 1, 100);
      const inputs = integerOption(opts.inputs, '--inputs', 1, 1000);
      const backend = schnorrBackend();
      const keys = Array.from({ length: n }, generateSecretKey);
      const pubkeys = keys.map((k) => backend.xonlyPublicKey(k));
      const threshold = opts.threshold === undefined ? defaultThreshold(n) : integerOption(opts.threshold, '--threshold', 1, n);
      const federation = buildFederation({ network: 'regtest', threshold, pubkeys });
      step(`${n} member keys generated (Schnorr backend: ${backend.name})`);
      step(`federation ${threshold}-of-${n}: ${federation.address}`);
      step(`descriptor: ${federation.descriptor}`);

      const value = 50_000_000n;
      const prevouts: Prevout[] = Array.from({ length: inputs }, () => ({ value, scriptPubKey: federation.scriptPubKey }));
      const payee = buildFederation({ network: 'regtest', threshold: 1, pubkeys: [pubkeys[0]!] }).scriptPubKey;
      const unsigned: Transaction = {
        version: 2,
        locktime: 0,
        inputs: prevouts.map((_, i) => ({ txid: toHex(randomBytes(32)), vout: i, sequence: 0xfffffffd, scriptSig: new Uint8Array(0), witness: [] })),
        outputs: [{ value: value * BigInt(inputs) - 100_000n, scriptPubKey: payee }],
      };
      step(`${inputs} federation output(s) of ${value} sats DECLARED by the devnet — they exist on no chain; nothing here can be broadcast`);
      step(`unsigned payment ${txid(unsigned)}, ${signedFederationVsize(federation, unsigned)} vB once signed`);

      const collector = new SignatureCollector(federation);
      const id = collector.open(unsigned, prevouts);
      for (const [i, secretKey] of keys.slice(0, threshold).entries()) {
        const pool = new SigningPool(federation, { secretKey, size: 1 });
        try {
          const sigs = await pool.signTransaction(unsigned, prevouts);
          await collector.add(id, { pubkey: pubkeys[i]!, signatures: unsigned.inputs.map((_, j) => sigs.subarray(j * 64, j * 64 + 64)) });
          step(`member ${i + 1} (${toHex(pubkeys[i]!).slice(0, 16)}…) signed ${inputs} input(s): ${collector.count(id)}/${threshold}`);
        } finally {
          await pool.destroy();
        }
      }
      const signed = collector.finalize(id);
      checkFinalizedWitnesses(signed, prevouts, federation);
      step(`finalized and verified locally: ${threshold} valid signatures on every input`);
      process.stdout.write(`${toHex(serializeTx(signed))}\n`);
      step('not broadcast: no bitcoind in this devnet (the member service and regtest loop come next)');
    });
}
