import assert from 'node:assert/strict';
import { EvmError } from '../../../src/evm/errors.js';
import { describe, it } from 'node:test';
import {
  bridgeInterface,
  bridgeRequestLogs,
  decodeRequestLog,
  REQUEST_PEGOUT_TOPIC,
  type RawLog,
  type RequestLog,
} from '../../../src/evm/bridge.js';

// The RequestPegOut decoder against ethers' ABI encoding of the same event, and against logs
// that are not what the bridge emits.

const SENDER = '0x5fbdb2315678afecb367f032d93f642f64180aa3';
const HASHES = {
  transactionHash: `0x${'ab'.repeat(32)}`,
  blockHash: `0x${'cd'.repeat(32)}`,
  blockNumber: '0x7',
  logIndex: '0x3',
};

function encoded(bitcoinAddress: Uint8Array, wei: bigint): RawLog {
  const { topics, data } = bridgeInterface.encodeEventLog('RequestPegOut', [SENDER, bitcoinAddress, wei]);
  return { address: '0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', topics, data, ...HASHES };
}

function decoded(log: RawLog): RequestLog {
  const out = decodeRequestLog(log, 0);
  assert.ok(!('error' in out), `decodes: ${'error' in out ? out.error : ''}`);
  return out;
}

describe('decodeRequestLog', () => {
  it('reads what ethers encodes, for every length of address bytes and the extremes of the value', () => {
    for (const length of [0, 1, 31, 32, 33, 42, 62, 64, 65, 200]) {
      for (const wei of [0n, 1n, 10n ** 16n + 7n, 2n ** 256n - 1n]) {
        const bytes = Uint8Array.from({ length }, (_, i) => (i * 37 + length) & 0xff);
        const log = decoded(encoded(bytes, wei));
        assert.deepEqual(log.addressBytes, bytes);
        assert.equal(log.wei, wei);
        assert.equal(log.evmAddress, SENDER);
        assert.deepEqual(
          [log.txHash, log.blockHash, log.blockNumber, log.logIndex],
          [HASHES.transactionHash, HASHES.blockHash, 7, 3],
        );
      }
    }
  });

  it('agrees with ethers parseLog on a request as the bridge emits it', () => {
    const raw = encoded(
      new TextEncoder().encode('bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080'),
      12_345_678_900_000_000n,
    );
    const ours = decoded(raw);
    const theirs = bridgeInterface.parseLog(raw)!;
    assert.equal(ours.evmAddress, (theirs.args[0] as string).toLowerCase());
    assert.equal(`0x${Buffer.from(ours.addressBytes).toString('hex')}`, theirs.args[1]);
    assert.equal(ours.wei, theirs.args[2]);
  });

  it('reports, never throws, for logs the bridge does not emit', () => {
    const good = encoded(new TextEncoder().encode('bcrt1q…'), 10n ** 16n);
    const data = good.data.slice(2);
    const at = (word: number, hex: string): string =>
      `0x${data.slice(0, word * 64)}${hex}${data.slice(word * 64 + 64)}`;
    const cases: [string, RawLog, RegExp][] = [
      ['another event', { ...good, topics: [`0x${'8c'.repeat(32)}`, good.topics[1]!] }, /not a RequestPegOut log/],
      ['no sender topic', { ...good, topics: [REQUEST_PEGOUT_TOPIC] }, /one indexed address topic/],
      ['an extra topic', { ...good, topics: [...good.topics, good.topics[1]!] }, /one indexed address topic/],
      [
        'a dirty address topic',
        { ...good, topics: [REQUEST_PEGOUT_TOPIC, `0x01${good.topics[1]!.slice(4)}`] },
        /bits above 160/,
      ],
      ['data not hex', { ...good, data: '0xzz' }, /not hex/],
      ['data too short', { ...good, data: good.data.slice(0, 2 + 64 * 2) }, /shorter than/],
      ['offset into the head', { ...good, data: at(0, (32).toString(16).padStart(64, '0')) }, /word boundary/],
      ['offset off a word boundary', { ...good, data: at(0, (65).toString(16).padStart(64, '0')) }, /word boundary/],
      ['offset past the data', { ...good, data: at(0, 'ff'.repeat(32)) }, /exceeds/],
      ['length past the data', { ...good, data: at(2, (1000).toString(16).padStart(64, '0')) }, /run past|exceeds/],
    ];
    for (const [name, log, error] of cases) {
      const out = decodeRequestLog(log, 0);
      assert.ok('error' in out, `${name}: refused`);
      assert.match(out.error, error, name);
    }
  });

  it("numbers each request by its position among the bridge's RequestPegOut logs of its transaction", () => {
    const BRIDGE = '0xbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb';
    const log = (tx: number, block: number, index: number, extra: Partial<RawLog> = {}): RawLog => ({
      ...encoded(new TextEncoder().encode('bcrt1q'), 10n ** 16n),
      transactionHash: `0x${String(tx).padStart(64, '0')}`,
      blockNumber: `0x${block.toString(16)}`,
      logIndex: `0x${index.toString(16)}`,
      ...extra,
    });
    const logs = [
      log(1, 7, 0),
      log(1, 7, 1, { address: `0x${'cc'.repeat(20)}` }), // another contract: not counted
      log(1, 7, 2, { topics: [`0x${'8c'.repeat(32)}`] }), // another event of the bridge: not counted
      log(2, 7, 3),
      log(1, 7, 4),
      log(1, 7, 5, { removed: true }),
      log(1, 7, 6, { data: '0x00' }), // a RequestPegOut that does not decode still takes its place
      log(1, 7, 7),
    ];
    const numbered = bridgeRequestLogs(logs, BRIDGE).map(({ raw, ordinal }) => [Number(raw.logIndex), ordinal]);
    assert.deepEqual(numbered, [
      [0, 0],
      [3, 0],
      [4, 1],
      [6, 2],
      [7, 3],
    ]);
    // the same transaction re-mined in another block, at other log indexes: the same ordinals
    const remined = logs.map((l) => ({
      ...l,
      blockNumber: '0x9',
      logIndex: `0x${(Number(l.logIndex) + 40).toString(16)}`,
    }));
    assert.deepEqual(
      bridgeRequestLogs(remined, BRIDGE).map(({ ordinal }) => ordinal),
      [0, 0, 1, 2, 3],
    );
    // ordinals come from the list's order, so a node's list out of chain order, or with a log twice,
    // would name other requests (a phantom second request of one burn, two swapped): refused whole
    const malformed = (err: unknown): boolean => err instanceof EvmError && err.code === 'rpc_malformed';
    assert.throws(() => bridgeRequestLogs([log(1, 7, 0), log(1, 7, 0)], BRIDGE), malformed);
    assert.throws(() => bridgeRequestLogs([log(1, 7, 1), log(1, 7, 0)], BRIDGE), malformed);
    assert.throws(() => bridgeRequestLogs([log(1, 8, 0), log(1, 7, 5)], BRIDGE), malformed);
    assert.throws(() => bridgeRequestLogs([log(1, 7, 0, { logIndex: 'x' })], BRIDGE), malformed);
    assert.equal(bridgeRequestLogs([log(1, 7, 5), log(1, 8, 0)], BRIDGE).length, 2);
    // and a log from outside the blocks asked for (one not final yet) is no answer to the question
    assert.throws(() => bridgeRequestLogs([log(1, 7, 0), log(1, 9, 0)], BRIDGE, { from: 7, to: 8 }), malformed);
    assert.throws(() => bridgeRequestLogs([log(1, 6, 0)], BRIDGE, { from: 7, to: 8 }), malformed);
    assert.equal(bridgeRequestLogs([log(1, 7, 0), log(1, 8, 0)], BRIDGE, { from: 7, to: 8 }).length, 2);
  });
});
