import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { fromHex, toHex } from '../../../src/bitcoin/bytes.js';
import { buildFederation, type Federation } from '../../../src/bitcoin/federation.js';
import type { Network } from '../../../src/bitcoin/network.js';
import {
  parsePrevouts,
  parseTx,
  serializeTx,
  withWitnesses,
  type Prevout,
  type Transaction,
} from '../../../src/bitcoin/tx.js';
import {
  checkFinalizedWitnesses,
  inProcessVerifier,
  SignatureCollector,
  verifyFinalizedWitnesses,
} from '../../../src/signing/collector.js';
import { schnorrBackend } from '../../../src/signing/schnorr.js';
import { federationVectors, type FederationVector } from '../../support/vectors.js';

interface Setup {
  v: FederationVector;
  federation: Federation;
  tx: Transaction;
  prevouts: Prevout[];
  /** member x-only hex → its signatures (zero aux), for every member */
  sigs: Map<string, Uint8Array[]>;
}

function setup(v: FederationVector): Setup {
  const network = Object.keys(v.address)[0] as Network;
  const federation = buildFederation({
    network,
    threshold: v.threshold,
    pubkeys: v.xonlyPubkeys.map((k) => fromHex(k)),
  });
  const tx = parseTx(fromHex(v.spend.unsignedTx));
  const prevouts = parsePrevouts(v.spend.prevouts, tx.inputs.length);
  const backend = schnorrBackend();
  const sigs = new Map<string, Uint8Array[]>();
  for (const sk of v.secretKeys) {
    const all = backend.signBatch(fromHex(sk), fromHex(v.spend.sighashes.join('')), 'zero');
    sigs.set(
      toHex(backend.xonlyPublicKey(fromHex(sk))),
      tx.inputs.map((_, i) => all.slice(i * 64, i * 64 + 64)),
    );
  }
  return { v, federation, tx, prevouts, sigs };
}

const signersOf = (s: Setup): string[] => s.v.spend.signers;

describe('signature collector on the federation vectors', () => {
  for (const v of federationVectors()) {
    const s = setup(v);
    describe(`${v.threshold}-of-${v.members}`, () => {
      it("finalizes to the vector's signedTx byte for byte, and the result checks", async () => {
        const collector = new SignatureCollector(s.federation);
        const id = collector.open(s.tx, s.prevouts);
        assert.equal(id, v.spend.txid);
        for (const signer of signersOf(s))
          assert.equal(await collector.add(id, { pubkey: fromHex(signer), signatures: s.sigs.get(signer)! }), 'added');
        const signed = collector.finalize(id);
        assert.equal(toHex(serializeTx(signed)), v.spend.signedTx);
        checkFinalizedWitnesses(signed, s.prevouts, s.federation);
      });

      it('uses exactly t signatures even when every member signed', async () => {
        const collector = new SignatureCollector(s.federation);
        const id = collector.open(s.tx, s.prevouts);
        for (const [pk, sigs] of s.sigs) await collector.add(id, { pubkey: fromHex(pk), signatures: sigs });
        const signed = collector.finalize(id);
        for (const input of signed.inputs)
          assert.equal(input.witness.slice(0, v.members).filter((w) => w.length === 64).length, v.threshold);
        checkFinalizedWitnesses(signed, s.prevouts, s.federation);
      });

      it('ignores an exact duplicate and refuses t−1', async () => {
        const collector = new SignatureCollector(s.federation);
        const id = collector.open(s.tx, s.prevouts);
        const [first] = signersOf(s);
        assert.equal(await collector.add(id, { pubkey: fromHex(first!), signatures: s.sigs.get(first!)! }), 'added');
        assert.equal(
          await collector.add(id, { pubkey: fromHex(first!), signatures: s.sigs.get(first!)! }),
          'duplicate',
        );
        assert.equal(collector.count(id), 1);
        if (v.threshold > 1) assert.throws(() => collector.finalize(id), { code: 'not_enough_signatures' });
      });
    });
  }
});

describe('collector refusals', () => {
  const s = setup(federationVectors()[1]!); // 2-of-3
  const member = s.v.spend.signers[0]!;

  const cases: [string, () => { pubkey: Uint8Array; signatures: Uint8Array[] }, string][] = [
    [
      'a non-member',
      () => ({ pubkey: schnorrBackend().xonlyPublicKey(Buffer.alloc(32, 9)), signatures: s.sigs.get(member)! }),
      'not_a_member',
    ],
    [
      'too few signatures',
      () => ({ pubkey: fromHex(member), signatures: s.sigs.get(member)!.slice(1) }),
      'wrong_signature_count',
    ],
    [
      'too many signatures',
      () => ({ pubkey: fromHex(member), signatures: [...s.sigs.get(member)!, s.sigs.get(member)![0]!] }),
      'wrong_signature_count',
    ],
    [
      'a flipped bit',
      () => {
        const bad = s.sigs.get(member)!.map((x) => Uint8Array.from(x));
        bad[1]![10]! ^= 0x40;
        return { pubkey: fromHex(member), signatures: bad };
      },
      'invalid_signature',
    ],
    [
      "another member's signatures",
      () => ({ pubkey: fromHex(member), signatures: s.sigs.get(s.v.spend.signers[1]!)! }),
      'invalid_signature',
    ],
    [
      'a 65-byte signature',
      () => ({ pubkey: fromHex(member), signatures: s.sigs.get(member)!.map((x) => Uint8Array.of(...x, 1)) }),
      'invalid_signature',
    ],
  ];
  for (const [name, make, code] of cases) {
    it(`refuses ${name} (${code}) and stores nothing`, async () => {
      const collector = new SignatureCollector(s.federation);
      const id = collector.open(s.tx, s.prevouts);
      await assert.rejects(collector.add(id, make()), { code });
      assert.equal(collector.count(id), 0);
    });
  }

  for (const [name, make, code] of cases.filter(([, , c]) => c !== 'invalid_signature')) {
    it(`a set signed here is not verified again, but its shape is: refuses ${name} (${code})`, async () => {
      const collector = new SignatureCollector(s.federation);
      const id = collector.open(s.tx, s.prevouts);
      await assert.rejects(collector.add(id, make(), true), { code });
      assert.equal(collector.count(id), 0);
    });
  }

  // A member that sent a set failing verification is faulty or hostile (an honest one checks its own
  // signatures before they leave): resending it, or any set of its for that transaction, must not buy
  // it another verification of every input on the pool, which the honest members' sets wait behind.
  it("verifies a member's sets for a transaction once: after a set that fails, its sets for it are refused unchecked", async () => {
    let verifications = 0;
    const verify = inProcessVerifier(s.federation);
    const collector = new SignatureCollector(s.federation, async (...args) => {
      verifications++;
      return verify(...args);
    });
    const id = collector.open(s.tx, s.prevouts);
    const bad = s.sigs.get(member)!.map((x) => Uint8Array.from(x));
    bad[0]![5]! ^= 0x01;
    for (let i = 0; i < 3; i++)
      await assert.rejects(collector.add(id, { pubkey: fromHex(member), signatures: bad }), {
        code: 'invalid_signature',
      });
    await assert.rejects(collector.add(id, { pubkey: fromHex(member), signatures: s.sigs.get(member)! }), {
      code: 'invalid_signature',
      message: /refused unchecked/,
    });
    assert.equal(verifications, 1, 'the failed set was verified once, and nothing of that member after it');
    const other = s.v.spend.signers[1]!;
    assert.equal(await collector.add(id, { pubkey: fromHex(other), signatures: s.sigs.get(other)! }), 'added');
    assert.equal(collector.count(id), 1, "another member's valid set still counts");
    // per transaction: the same member's sets for another one are verified as usual
    const second = collector.open({ ...s.tx, locktime: s.tx.locktime + 1 }, s.prevouts);
    await assert.rejects(collector.add(second, { pubkey: fromHex(member), signatures: bad }), {
      code: 'invalid_signature',
      message: /does not verify/,
    });
    assert.equal(verifications, 3);
  });

  it('refuses an unknown transaction', async () => {
    const collector = new SignatureCollector(s.federation);
    await assert.rejects(collector.add('00'.repeat(32), { pubkey: fromHex(member), signatures: [] }), {
      code: 'unknown_transaction',
    });
  });
});

describe("the vectors' rejected witnesses fail the check", () => {
  const s = setup(federationVectors()[2]!); // 5-of-7
  const n = s.v.members;
  const keys = s.federation.pubkeys.map(toHex);
  const witnessWith = (signers: string[], order: 'reverse' | 'forward'): Uint8Array[][] =>
    s.tx.inputs.map((_, i) => {
      const ordered = order === 'reverse' ? [...keys].reverse() : keys;
      return [
        ...ordered.map((k) => (signers.includes(k) ? s.sigs.get(k)![i]! : new Uint8Array(0))),
        s.federation.tapscript,
        s.federation.controlBlock,
      ];
    });
  const signers = s.v.spend.signers;
  const extra = keys.find((k) => !signers.includes(k))!;
  const cases: [string, Uint8Array[][], RegExp][] = [
    ['tMinusOne', witnessWith(signers.slice(1), 'reverse'), /has 4 signatures, the federation needs exactly 5/],
    ['forwardOrder', witnessWith(signers, 'forward'), /does not verify/],
    ['tPlusOne', witnessWith([...signers, extra], 'reverse'), /has 6 signatures/],
    [
      'missing control block',
      s.tx.inputs.map(() => [...Array(n).fill(new Uint8Array(0)), s.federation.tapscript]),
      /witness has 8 items, expected 9/,
    ],
  ];
  for (const [name, witnesses, message] of cases) {
    it(name, () => {
      if (name in s.v.rejected) assert.equal(s.v.rejected[name]!.allowed, false, 'Bitcoin Core refused it too');
      assert.throws(
        () => checkFinalizedWitnesses(withWitnesses(s.tx, witnesses), s.prevouts, s.federation),
        (err: Error & { code?: string }) => err.code === 'invalid_witness' && message.test(err.message),
      );
    });
  }
});

describe('a finalized payment from a peer', () => {
  const s = setup(federationVectors()[2]!); // 5-of-7
  const keys = s.federation.pubkeys.map(toHex);
  const signers = s.v.spend.signers;
  const witnesses = (forged: string): Uint8Array[][] =>
    s.tx.inputs.map((_, i) => [
      ...[...keys]
        .reverse()
        .map((k) =>
          !signers.includes(k) ? new Uint8Array(0) : k === forged ? new Uint8Array(64).fill(7) : s.sigs.get(k)![i]!,
        ),
      s.federation.tapscript,
      s.federation.controlBlock,
    ]);

  it("with one signer's signatures forged is refused on a spot check, before any set is verified whole on the pool", async () => {
    // a hostile member can put valid signatures of its own on every input, and verifying them whole
    // first made it cost a verification of every input of a frame as large as it likes, each time sent
    for (const forged of signers) {
      let calls = 0;
      const counting: Parameters<typeof verifyFinalizedWitnesses>[3] = async (...args) => {
        calls++;
        return inProcessVerifier(s.federation)(...args);
      };
      await assert.rejects(
        verifyFinalizedWitnesses(withWitnesses(s.tx, witnesses(forged)), s.prevouts, s.federation, counting),
        (err: Error & { code?: string }) => err.code === 'invalid_witness' && /does not verify/.test(err.message),
      );
      assert.equal(calls, 0, `forged ${forged}: ${calls} sets verified whole`);
    }
    // the sound one passes, every set verified
    let calls = 0;
    const sound = witnesses('');
    await verifyFinalizedWitnesses(withWitnesses(s.tx, sound), s.prevouts, s.federation, async (...args) => {
      calls++;
      return inProcessVerifier(s.federation)(...args);
    });
    assert.equal(calls, signers.length);
  });
});
