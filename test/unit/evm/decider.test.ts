import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../../../src/bitcoin/bytes.js';
import { decodeAddress } from '../../../src/bitcoin/address.js';
import { classifyScript } from '../../../src/bitcoin/script.js';
import { NETWORK_NAMES, type Network } from '../../../src/bitcoin/network.js';
import {
  decideRequest,
  MAX_ADDRESS_BYTES,
  MIN_PEGOUT_SATS,
  parseBtcAmount,
  WEI_PER_SAT,
} from '../../../src/evm/decider.js';
import { isRequestId, parseRequestId, requestId, tryParseRequestId } from '../../../src/evm/request-id.js';
import { readJsonVector } from '../../support/vectors.js';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const CHAINS: Record<string, Network> = {
  main: 'mainnet',
  test: 'testnet',
  testnet4: 'testnet',
  signet: 'signet',
  regtest: 'regtest',
};
const ENOUGH = (MIN_PEGOUT_SATS + 1n) * WEI_PER_SAT;

describe('request decider', () => {
  it("decodes every address of Bitcoin Core's key_io_valid.json on its network; pays the five standard types and refuses the rest", () => {
    const rows = readJsonVector<[string, string, { chain: string; isPrivkey: boolean }][]>('key_io_valid.json').filter(
      (r) => !r[2].isPrivkey,
    );
    const seen = new Map<string, number>();
    for (const [address, script, meta] of rows) {
      assert.equal(
        toHex(decodeAddress(address, CHAINS[meta.chain]!).scriptPubKey),
        script,
        `${address} decodes as Core says`,
      );
      const d = decideRequest(utf8(address), ENOUGH, CHAINS[meta.chain]!);
      const type = classifyScript(fromHex(script));
      seen.set(type, (seen.get(type) ?? 0) + 1);
      if (['p2pkh', 'p2sh', 'p2wpkh', 'p2wsh', 'p2tr'].includes(type)) {
        assert.equal(d.status, 'accepted', `${address}: ${d.detail}`);
        assert.equal(toHex(d.scriptPubKey!), script);
      } else {
        // witness v2-16 and v1 programs of another length: anyone could spend them today
        assert.equal(d.status, 'rejected', address);
        assert.equal(d.reason, 'unsupported_destination', address);
        assert.equal(d.scriptPubKey, undefined);
      }
    }
    for (const type of ['p2pkh', 'p2sh', 'p2wpkh', 'p2wsh', 'p2tr', 'witness_unknown'])
      assert.ok(seen.get(type), `the vectors hold ${type} addresses`);
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
    assert.equal(
      decideRequest(utf8(good), 21_000_001n * 100_000_000n * WEI_PER_SAT, 'regtest').reason,
      'amount_overflow',
    );
    assert.equal(decideRequest(Uint8Array.of(0xc3, 0x28), ENOUGH, 'regtest').reason, 'not_utf8');
    assert.equal(
      decideRequest(utf8('bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4'), ENOUGH, 'regtest').reason,
      'wrong_network',
    );
  });

  it('keeps a bounded copy of a destination longer than any address: a burn of any length cannot grow the record', () => {
    // zero bytes are the cheapest calldata and valid UTF-8; escaped in JSON each is six characters
    for (const bytes of [new Uint8Array(280_000), Buffer.alloc(100_000, 0xff), utf8(`bcrt1q${'q'.repeat(5000)}`)]) {
      const d = decideRequest(bytes, ENOUGH, 'regtest');
      assert.equal(d.status, 'rejected');
      assert.equal(d.reason, 'invalid_address');
      assert.ok(d.bitcoinAddress.length <= 200, `kept ${d.bitcoinAddress.length} characters`);
      assert.ok(d.bitcoinAddress.endsWith(`(${bytes.length} bytes)`), d.bitcoinAddress);
      assert.ok((d.detail ?? '').length <= 200, d.detail);
    }
    // the longest an address may be still reaches the address decoder, which names the fault
    const longest = decideRequest(utf8(`bcrt1q${'q'.repeat(MAX_ADDRESS_BYTES - 6)}`), ENOUGH, 'regtest');
    assert.equal(longest.reason, 'invalid_address');
    assert.equal(longest.bitcoinAddress.length, MAX_ADDRESS_BYTES);
  });

  it('parses BTC amounts exactly and refuses sub-satoshi digits', () => {
    assert.equal(parseBtcAmount('0.015'), 1_500_000n);
    assert.equal(parseBtcAmount('21000000'), 2_100_000_000_000_000n);
    assert.equal(parseBtcAmount('0.00000001'), 1n);
    for (const bad of ['0.000000001', '1e-2', '-1', '', 'abc', '21000000.00000001'])
      assert.throws(() => parseBtcAmount(bad), { code: 'invalid_amount' }, bad);
  });

  it('names requests by transaction and ordinal, in one text form', () => {
    const id = requestId(`0x${'AB'.repeat(32)}`, 7);
    assert.equal(id, `0x${'ab'.repeat(32)}:7`);
    assert.deepEqual(parseRequestId(id), { txHash: `0x${'ab'.repeat(32)}`, ordinal: 7 });
    assert.deepEqual(tryParseRequestId(id), parseRequestId(id));
    assert.equal(requestId(`0x${'ab'.repeat(32)}`, 0xffffffff), `0x${'ab'.repeat(32)}:4294967295`);
    // every other spelling of the same request is refused, never normalised (issue 11, attack 1)
    const h = `0x${'ab'.repeat(32)}`;
    for (const alias of [
      `${h}:07`,
      `${h}:0000000007`,
      `0x${'AB'.repeat(32)}:7`,
      `${h}:+7`,
      `${h}:7 `,
      `${h}:4294967296`,
      `${h}/7`,
      'nope',
      `${h.slice(0, -2)}:7`,
    ]) {
      assert.throws(() => parseRequestId(alias), { code: 'invalid_request' }, alias);
      assert.equal(isRequestId(alias), false, alias);
      assert.equal(tryParseRequestId(alias), undefined, alias);
    }
    for (const notText of [undefined, null, 7, { txHash: h, ordinal: 7 }])
      assert.equal(tryParseRequestId(notText), undefined);
    assert.throws(() => requestId(h, -1), { code: 'invalid_request' });
    assert.throws(() => requestId(h, 2 ** 32), { code: 'invalid_request' });
  });
});

describe('address text', () => {
  it('with a UTF-8 byte order mark before it is no address, as for Bitcoin Core', () => {
    // TextDecoder drops a leading BOM unless told not to: the request was accepted and paid to the
    // address after it, a request Core (and an auditor reading the log) calls invalid
    const address = 'bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080';
    const d = decideRequest(
      Uint8Array.from([0xef, 0xbb, 0xbf, ...new TextEncoder().encode(address)]),
      10n ** 16n,
      'regtest',
    );
    assert.equal(d.status, 'rejected');
    assert.equal(d.bitcoinAddress, `\uFEFF${address}`);
  });
});
