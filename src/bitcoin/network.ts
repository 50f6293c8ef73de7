import { BitcoinError } from './errors.js';

export type Network = 'mainnet' | 'testnet' | 'signet' | 'regtest';

export interface NetworkParams {
  readonly bech32: string;
  readonly p2pkh: number;
  readonly p2sh: number;
}

export const NETWORKS: Readonly<Record<Network, NetworkParams>> = {
  mainnet: { bech32: 'bc', p2pkh: 0x00, p2sh: 0x05 },
  testnet: { bech32: 'tb', p2pkh: 0x6f, p2sh: 0xc4 },
  signet: { bech32: 'tb', p2pkh: 0x6f, p2sh: 0xc4 },
  regtest: { bech32: 'bcrt', p2pkh: 0x6f, p2sh: 0xc4 },
};

export const NETWORK_NAMES = Object.keys(NETWORKS) as Network[];

export function parseNetwork(text: string, field = 'network'): Network {
  if ((NETWORK_NAMES as string[]).includes(text)) return text as Network;
  throw new BitcoinError(
    'invalid_network',
    `${field} must be one of ${NETWORK_NAMES.join(', ')}, got ${JSON.stringify(text)}`,
    { field, value: text },
  );
}
