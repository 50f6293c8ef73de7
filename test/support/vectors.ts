import { readFileSync } from 'node:fs';
import { vectorPath } from './paths.js';

export interface FederationVector {
  threshold: number;
  members: number;
  secretKeys: string[];
  xonlyPubkeys: string[];
  sortedXonlyPubkeys: string[];
  descriptor: string;
  address: Record<string, string>;
  tapscript: string;
  leafHash: string;
  outputKey: string;
  scriptPubKey: string;
  controlBlock: string;
  spend: {
    unsignedTx: string;
    txid: string;
    prevouts: { value: number; scriptPubKey: string }[];
    sighashes: string[];
    signers: string[];
    signedTx: string;
    vsize: number;
    feeRateSatVb: number;
    fee: number;
  };
  rejected: Record<string, { allowed: boolean; rejectReason: string }>;
}

export function readJsonVector<T>(name: string): T {
  return JSON.parse(readFileSync(vectorPath(name), 'utf8')) as T;
}

export function federationVectors(): FederationVector[] {
  return readJsonVector<{ vectors: FederationVector[] }>('federation_vectors.json').vectors;
}
