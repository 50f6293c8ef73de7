import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bech32, bech32m } from '@scure/base';
import { decodeAddress, encodeAddress } from '../../../src/bitcoin/address.js';
import { fromHex, toHex } from '../../../src/bitcoin/bytes.js';
import { NETWORK_NAMES, type Network } from '../../../src/bitcoin/network.js';
import { dustThreshold } from '../../../src/bitcoin/script.js';
import { readJsonVector } from '../../support/vectors.js';

type ValidRow = [string, string, { chain: string; isPrivkey: boolean; tryCaseFlip?: boolean }];
// testnet4 has testnet's address prefixes.
const CHAINS: Record<string, Network> = {
  main: 'mainnet',
  test: 'testnet',
  testnet4: 'testnet',
  signet: 'signet',
  regtest: 'regtest',
};

function flipCase(text: string): string {
  return [...text].map((c) => (c === c.toUpperCase() ? c.toLowerCase() : c.toUpperCase())).join('');
}

function isSegwit(address: string): boolean {
  return /^(bc|tb|bcrt)1/i.test(address);
}

const TEST_CHAINS: Network[] = ['testnet', 'signet', 'regtest'];

/** Test networks share base58 prefixes; testnet and signet also share the bech32 prefix. */
function sharesEncoding(address: string, a: Network, b: Network): boolean {
  if (isSegwit(address)) return (a === 'testnet' || a === 'signet') && (b === 'testnet' || b === 'signet');
  return TEST_CHAINS.includes(a) && TEST_CHAINS.includes(b);
}

describe("Bitcoin Core's key_io vectors", () => {
  const valid = readJsonVector<ValidRow[]>('key_io_valid.json').filter((row) => !row[2].isPrivkey);

  it('decodes every valid address to its scriptPubKey and encodes it back', () => {
    assert.ok(valid.length > 20);
    for (const [address, script, meta] of valid) {
      const network = CHAINS[meta.chain]!;
      assert.equal(toHex(decodeAddress(address, network).scriptPubKey), script, address);
      if (meta.tryCaseFlip)
        assert.equal(toHex(decodeAddress(flipCase(address), network).scriptPubKey), script, `case-flipped ${address}`);
      assert.equal(
        encodeAddress(fromHex(script), network),
        isSegwit(address) ? address.toLowerCase() : address,
        script,
      );
    }
  });

  it('says wrong_network for a valid address of another network', () => {
    for (const [address, , meta] of valid) {
      const own = CHAINS[meta.chain]!;
      for (const network of NETWORK_NAMES) {
        if (network === own || sharesEncoding(address, own, network)) continue;
        assert.throws(
          () => decodeAddress(address, network),
          (err: Error & { code?: string }) => err.code === 'wrong_network',
          `${address} on ${network}`,
        );
      }
    }
  });

  it('rejects every invalid string on every network', () => {
    const invalid = readJsonVector<[string][]>('key_io_invalid.json');
    assert.ok(invalid.length > 20);
    for (const [text] of invalid) {
      for (const network of NETWORK_NAMES) {
        assert.throws(
          () => decodeAddress(text, network),
          (err: Error & { code?: string }) => err.code === 'invalid_address',
          `${JSON.stringify(text)} on ${network}`,
        );
      }
    }
  });

  it("refuses the seed's regtest address with the broken checksum", () => {
    assert.throws(() => decodeAddress('bcrt1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh', 'regtest'), /checksum/);
  });

  // BIP350: the witness version picks the checksum; each decoder is tried first for its versions, and
  // a program under the other checksum is refused for that reason, whichever was tried first
  it('refuses a witness program checksummed for another version, in either direction', () => {
    const v0UnderBech32m = bech32m.encode('bcrt', [0, ...bech32.toWords(new Uint8Array(20).fill(7))]);
    const v1UnderBech32 = bech32.encode('bcrt', [1, ...bech32.toWords(new Uint8Array(32).fill(7))]);
    assert.throws(() => decodeAddress(v0UnderBech32m, 'regtest'), /witness version 0 must use bech32, not bech32m/);
    assert.throws(() => decodeAddress(v1UnderBech32, 'regtest'), /witness version 1 must use bech32m, not bech32/);
    assert.throws(() => decodeAddress(v1UnderBech32.toUpperCase(), 'regtest'), /witness version 1 must use bech32m/);
  });
});

describe('dust thresholds (Bitcoin Core GetDustThreshold at 3 sat/vB)', () => {
  it('matches Core for each standard output type', () => {
    assert.equal(dustThreshold(fromHex(`76a914${'00'.repeat(20)}88ac`)), 546n);
    assert.equal(dustThreshold(fromHex(`a914${'00'.repeat(20)}87`)), 540n);
    assert.equal(dustThreshold(fromHex(`0014${'00'.repeat(20)}`)), 294n);
    assert.equal(dustThreshold(fromHex(`0020${'00'.repeat(32)}`)), 330n);
    assert.equal(dustThreshold(fromHex(`5120${'00'.repeat(32)}`)), 330n);
  });
});
