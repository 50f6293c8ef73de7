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
});
