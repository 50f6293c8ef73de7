import { compactSizeLength } from './bytes.js';
import type { Federation } from './federation.js';
import { serializeTx, type Transaction } from './tx.js';

// Sizes of a signed federation spend, known before anyone signs: a script-path witness holds
// exactly t 64-byte signatures and n − t empty items, so fees are computed on the final size
// (the reference system priced the unsigned transaction and underpaid).

export const WITNESS_SCALE_FACTOR = 4;
/** Bitcoin Core's MAX_STANDARD_TX_WEIGHT: larger transactions are not relayed. */
export const MAX_STANDARD_TX_WEIGHT = 400_000;
const SCHNORR_SIGNATURE_SIZE = 64;
/** outpoint (36) + empty scriptSig length (1) + sequence (4). */
const INPUT_BASE_SIZE = 41;
/** version + locktime. */
const TX_FIXED_SIZE = 8;
/** segwit marker and flag, witness bytes (1 WU each). */
const SEGWIT_MARKER_WEIGHT = 2;

function varBytesSize(length: number): number {
  return compactSizeLength(length) + length;
}

/** Witness bytes of one federation input: item count, t signatures, n − t empty items, script, control block. */
export function federationWitnessSize(federation: Federation): number {
  const n = federation.pubkeys.length;
  const t = federation.threshold;
  return (
    compactSizeLength(n + 2) +
    t * varBytesSize(SCHNORR_SIGNATURE_SIZE) +
    (n - t) * varBytesSize(0) +
    varBytesSize(federation.tapscript.length) +
    varBytesSize(federation.controlBlock.length)
  );
}

/** Weight one signed federation input adds to a transaction. */
export function federationInputWeight(federation: Federation): number {
  return INPUT_BASE_SIZE * WITNESS_SCALE_FACTOR + federationWitnessSize(federation);
}

/** Weight one output adds to a transaction. */
export function outputWeight(scriptPubKey: Uint8Array): number {
  return (8 + varBytesSize(scriptPubKey.length)) * WITNESS_SCALE_FACTOR;
}

/** Weight of everything but inputs and outputs, for the given counts. */
export function txOverheadWeight(inputCount: number, outputCount: number): number {
  return (
    (TX_FIXED_SIZE + compactSizeLength(inputCount) + compactSizeLength(outputCount)) * WITNESS_SCALE_FACTOR +
    SEGWIT_MARKER_WEIGHT
  );
}

/** Weight of a fully signed spend of `inputCount` federation outputs to these output scripts. */
export function federationSpendWeight(
  federation: Federation,
  inputCount: number,
  outputScripts: readonly Uint8Array[],
): number {
  let weight = txOverheadWeight(inputCount, outputScripts.length) + inputCount * federationInputWeight(federation);
  for (const script of outputScripts) weight += outputWeight(script);
  return weight;
}

/** BIP141 weight of a transaction as it stands: its witness-stripped size counts four times, witness bytes once. */
export function txWeight(tx: Transaction): number {
  return serializeTx(tx, false).length * (WITNESS_SCALE_FACTOR - 1) + serializeTx(tx, true).length;
}

export function weightToVsize(weight: number): number {
  return Math.ceil(weight / WITNESS_SCALE_FACTOR);
}

/** Virtual size the transaction will have once signed by exactly t members on every input. */
export function signedFederationVsize(federation: Federation, tx: Transaction): number {
  return weightToVsize(
    federationSpendWeight(
      federation,
      tx.inputs.length,
      tx.outputs.map((o) => o.scriptPubKey),
    ),
  );
}
