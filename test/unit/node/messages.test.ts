import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { registerMessages } from '../../../src/node/messages.js';
import { decodeFrame, encodeFrame } from '../../../src/p2p/frames.js';
import { buildReplacement } from '../../../src/wallet/payment.js';
import { federation, finalizedBody, M, proposal, REQ, UTXO } from '../../support/coordinator.js';

// Found by review: a frame's body waits in its peer's inbox, counted at its wire size, until the
// coordinator takes it; a body that carried a padding of empty maps beside its fields (or inside one of
// them) decoded to some 64 times its bytes there. A body is what its type says and nothing more.

const checks = new Map<string, (body: unknown) => boolean>();
registerMessages({ registerType: (type, check) => void checks.set(type, check) });

const padding = Array.from({ length: 1000 }, () => ({}));
const decoded = (type: string, body: unknown): string => {
  const frame = decodeFrame(encodeFrame(type, body), checks);
  return typeof frame === 'string' ? frame : 'ok';
};

describe('message bodies on the links', () => {
  const P = proposal([REQ(0)], [UTXO(0)], M[1]!.hex);
  const F = finalizedBody(buildReplacement([REQ(0)], [UTXO(0)], 2, federation)!, [REQ(0).id], [1, 2, 3]);
  const S = { txid: '00'.repeat(32), signatures: new Uint8Array(64) };

  it('pass as honest members make them', () => {
    assert.deepEqual([decoded('proposal', P), decoded('finalized', F), decoded('signatures', S)], ['ok', 'ok', 'ok']);
  });

  it('left to the coordinator when malformed without padding: a proposal of another version, of too many inputs', () => {
    const many = Array.from({ length: 50_000 }, () => P.prevouts[0]!);
    assert.deepEqual(
      [decoded('proposal', { version: 2, round: 1 }), decoded('proposal', { ...P, prevouts: many })],
      ['ok', 'ok'],
    );
  });

  it('are refused with anything beside their fields, or inside them', () => {
    const padded: [string, unknown][] = [
      ['proposal', { ...P, pad: padding }],
      ['proposal', { ...P, round: padding }],
      ['proposal', { ...P, prevouts: P.prevouts.map((p) => ({ ...p, pad: padding })) }],
      ['proposal', { ...P, requestIds: [...P.requestIds, padding] }],
      ['finalized', { ...F, pad: padding }],
      ['finalized', { ...F, prevouts: F.prevouts.map((p) => ({ ...p, pad: padding })) }],
      ['signatures', { ...S, pad: padding }],
    ];
    assert.deepEqual(
      padded.map(([type, body]) => decoded(type, body)),
      padded.map(() => 'bad_body'),
    );
  });
});
