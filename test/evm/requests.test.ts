import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { toHex } from '../../src/bitcoin/bytes.js';
import { NETWORK_NAMES, type Network } from '../../src/bitcoin/network.js';
import { decideRequest, MIN_PEGOUT_SATS, parseBtcAmount, parseRequestId, requestId, WEI_PER_SAT } from '../../src/evm/requests.js';
import { readJsonVector } from '../support/vectors.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const CHAINS: Record<string, Network> = { main: 'mainnet', test: 'testnet', testnet4: 'testnet', signet: 'signet', regtest: 'regtest' };
const ENOUGH = (MIN_PEGOUT_SATS + 1n) * WEI_PER_SAT;

describe('request decider', () => {
  it("accepts every address of Bitcoin Core's key_io_valid.json on its network, every segwit version included", () => {
    const rows = readJsonVector<[string, string, { chain: string; isPrivkey: boolean }][]>('key_io_valid.json').filter((r) => !r[2].isPrivkey);
    const versions = new Set<number>();
    for (const [address, script, meta] of rows) {
      const d = decideRequest(utf8(address), ENOUGH, CHAINS[meta.chain]!);
      assert.equal(d.status, 'accepted', `${address}: ${d.detail}`);
      assert.equal(toHex(d.scriptPubKey!), script);
      const op = Number.parseInt(script.slice(0, 2), 16);
      if (script.length >= 8 && (op === 0 || (op >= 0x51 && op <= 0x60)) && Number.parseInt(script.slice(2, 4), 16) * 2 + 4 === script.length) versions.add(op === 0 ? 0 : op - 0x50);
    }
    assert.ok(versions.size >= 3, `segwit versions seen: ${[...versions].join(',')}`);
  });

  it('rejects every string of key_io_invalid.json on every network, with a reason', () => {
    for (const [text] of readJsonVector<[string][]>('key_io_invalid.json')) {
      for (const network of NETWORK_NAMES) {
        const d = decideRequest(utf8(text), ENOUGH, network);
        assert.equal(d.status, 'rejected', `${text} on ${network}`);
        assert.equal(d.reason, 'invalid_address');
      }
    }
  });

  it('converts wei to sats by floor, records the sub-satoshi remainder, applies the minimum', () => {
    const good = 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080';
    const d = decideRequest(utf8(good), 1_000_000n * WEI_PER_SAT + 123n, 'regtest');
    assert.equal(d.status, 'accepted');
    assert.equal(d.sats, 1_000_000n);
    assert.equal(d.subSatoshiWei, 123n);
    assert.equal(decideRequest(utf8(good), MIN_PEGOUT_SATS * WEI_PER_SAT - 1n, 'regtest').reason, 'below_minimum');
    assert.equal(decideRequest(utf8(good), 21_000_001n * 100_000_000n * WEI_PER_SAT, 'regtest').reason, 'amount_overflow');
    assert.equal(decideRequest(Uint8Array.of(0xc3, 0x28), ENOUGH, 'regtest').reason, 'not_utf8');
    assert.equal(decideRequest(utf8('bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4'), ENOUGH, 'regtest').reason, 'wrong_network');
  });

  it('parses BTC amounts exactly and refuses sub-satoshi digits', () => {
    assert.equal(parseBtcAmount('0.015'), 1_500_000n);
    assert.equal(parseBtcAmount('21000000'), 2_100_000_000_000_000n);
    assert.equal(parseBtcAmount('0.00000001'), 1n);
    for (const bad of ['0.000000001', '1e-2', '-1', '', 'abc', '21000000.00000001']) assert.throws(() => parseBtcAmount(bad), { code: 'invalid_amount' }, bad);
  });

  it('names requests by their log coordinates', () => {
    const id = requestId(`0x${'AB'.repeat(32)}`, 7);
    assert.equal(id, `0x${'ab'.repeat(32)}:7`);
    assert.deepEqual(parseRequestId(id), { txHash: `0x${'ab'.repeat(32)}`, logIndex: 7 });
    assert.throws(() => parseRequestId('nope'), { code: 'invalid_request' });
  });
});
