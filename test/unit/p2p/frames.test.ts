import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Packr } from 'msgpackr';
import { decodeFrame, encodeFrame, FRAME_VERSION } from '../../../src/p2p/frames.js';

// A frame is plain msgpack. msgpackr's structured-clone extension lets a sender refer to one object
// many times (or to an array from inside itself): a few hundred bytes that decode to a graph whose
// every re-encoding (a kept payment announced again, a record stored) doubles with each level.

/** What a malicious member can send: any msgpack, references included. */
const anyPackr = new Packr({ structuredClone: true, useRecords: false, mapsAsObjects: true });
const types = new Map<string, (body: unknown) => boolean>([['paused', (b) => typeof b === 'boolean']]);

describe('frames', () => {
  it('decode what encodeFrame makes', () => {
    assert.deepEqual(decodeFrame(encodeFrame('paused', true), types), { v: FRAME_VERSION, type: 'paused', body: true });
  });

  it('refuse references to an object already in the frame, and a list that holds itself', () => {
    const shared = { a: 1 };
    const aliased = anyPackr.pack({ v: FRAME_VERSION, type: 'paused', body: true, x: [shared, shared] });
    assert.equal(decodeFrame(Buffer.from(aliased), types), 'malformed');
    const cycle: unknown[] = [];
    cycle.push(cycle);
    const cyclic = anyPackr.pack({ v: FRAME_VERSION, type: 'paused', body: true, x: cycle });
    assert.equal(decodeFrame(Buffer.from(cyclic), types), 'malformed');
  });

  // Found by review: msgpackr decodes its own extension types in every decoder of the process, and 0x65
  // builds an Error, stack trace and all, from 4 bytes: a member's frame of them (beside a valid body,
  // charged at its bytes) cost its peer a hundred times what its bytes allow
  it('refuse the extension types the protocol never sends', () => {
    const errors = 64 * 1024;
    const items = Buffer.alloc(errors * 4);
    for (let i = 0; i < errors; i++) items.set([0xd4, 0x65, 0x00, 0x90], i * 4);
    const head = Buffer.from(anyPackr.pack({ v: FRAME_VERSION, type: 'paused', body: true, x: [] }));
    const count = Buffer.from([0xdd, 0, 0, 0, 0]); // an array 32 in place of x's empty array
    count.writeUInt32BE(errors, 1);
    const frame = Buffer.concat([head.subarray(0, head.length - 1), count, items]);
    const decoded = decodeFrame(frame, types);
    assert.equal(typeof decoded === 'string' ? decoded : 'accepted', 'malformed', 'a frame of Error extensions');
    for (const value of [new Set([1]), /x/, new Date(0), new Float64Array(1), new Error('e')]) {
      const packed = anyPackr.pack({ v: FRAME_VERSION, type: 'paused', body: true, x: value });
      assert.equal(decodeFrame(Buffer.from(packed), types), 'malformed', `${String(value)} decoded`);
    }
    // bigint, which amounts travel as, still decodes
    const amount = anyPackr.pack({ v: FRAME_VERSION, type: 'paused', body: true, x: 2n ** 70n });
    assert.notEqual(decodeFrame(Buffer.from(amount), types), 'malformed');
  });
});
