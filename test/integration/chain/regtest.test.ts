import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BitcoinObserver, recoverUtxo } from '../../../src/chain/observer.js';
import { BitcoinRpcError, type BitcoinRpcErrorCode, type MempoolAcceptResult } from '../../../src/chain/rpc.js';
import { WalletError, type WalletErrorCode } from '../../../src/wallet/errors.js';
import { cursorKey } from '../../../src/storage/keys.js';
import { getUtxo, listUnspent } from '../../../src/wallet/utxos.js';
import { BITCOIND, NO_BITCOIND, startRegtest, type Regtest } from '../../support/bitcoind.js';
import { openTempStore } from '../../support/tempdir.js';

/**
 * Against a real Bitcoin Core in regtest (only when env BITCOIND names the binary). The
 * observer's "federation script" here is a wallet taproot address, so the wallet can both fund
 * it (peg-ins) and spend from it (payments); the observer treats any script the same way.
 */

const skip = BITCOIND === undefined ? NO_BITCOIND : false;

function rpcCode(code: BitcoinRpcErrorCode) {
  return (err: unknown) => err instanceof BitcoinRpcError && err.code === code;
}

function walletCode(code: WalletErrorCode) {
  return (err: unknown) => err instanceof WalletError && err.code === code;
}

async function mine(node: Regtest, blocks: number, address = node.minerAddress): Promise<string[]> {
  return node.rpc.call<string[]>('generatetoaddress', [blocks, address]);
}

async function signAndHex(
  node: Regtest,
  inputs: { txid: string; vout: number }[],
  outputs: Record<string, number>[],
): Promise<string> {
  // replaceable: signals BIP125, so a conflicting spend is judged on fee on every Core version
  const raw = await node.rpc.call<string>('createrawtransaction', [inputs, outputs, 0, true]);
  const signed = await node.rpc.call<{ hex: string; complete: boolean }>('signrawtransactionwithwallet', [raw]);
  assert.ok(signed.complete, 'wallet signed every input');
  return signed.hex;
}

test('Bitcoin Core client against regtest: reads, fee rate fallback, broadcast outcomes', { skip }, async (t) => {
  const node = await startRegtest(t, BITCOIND as string);
  await mine(node, 110);
  const info = await node.rpc.getBlockchainInfo();
  assert.deepEqual([info.chain, info.blocks], ['regtest', 110]);
  assert.equal(await node.rpc.getBlockCount(), 110);
  const block = await node.rpc.getBlock(await node.rpc.getBlockHash(110));
  assert.deepEqual([block.height, block.tx.length, typeof block.tx[0]?.vin[0]?.coinbase], [110, 1, 'string']);
  await assert.rejects(node.rpc.getBlockHash(111), rpcCode('not_found'));

  const fee = await node.rpc.feeRate({ confTarget: 6, maxSatPerVb: 100 });
  assert.deepEqual([fee.source, fee.satPerVb], ['fallback', 2], 'a fresh regtest node has no estimate');
  assert.ok((await node.rpc.getNetworkInfo()).relayfee > 0);

  const destination = await node.rpc.call<string>('getnewaddress');
  const txid = await node.rpc.call<string>('sendtoaddress', [destination, 1]);
  assert.ok((await node.rpc.getMempoolEntry(txid)).vsize > 0);
  const hex = (await node.rpc.getRawTransaction(txid)).hex as string;
  assert.equal(await node.rpc.broadcast(hex), 'accepted', 'the same transaction again, from the mempool');
  await mine(node, 1);
  assert.equal(await node.rpc.broadcast(hex), 'already_in_chain');
  await assert.rejects(node.rpc.getMempoolEntry(txid), rpcCode('not_found'));

  const missing = await node.rpc.call<string>('createrawtransaction', [
    [{ txid: '11'.repeat(32), vout: 0 }],
    [{ [destination]: 0.1 }],
  ]);
  await assert.rejects(node.rpc.sendRawTransaction(missing), rpcCode('missing_inputs'));

  const [coin] = await node.rpc.call<{ txid: string; vout: number; amount: number }[]>('listunspent', [1]);
  assert.ok(coin);
  const first = await signAndHex(
    node,
    [{ txid: coin.txid, vout: coin.vout }],
    [{ [destination]: Number((coin.amount - 0.001).toFixed(8)) }],
  );
  assert.equal(await node.rpc.broadcast(first), 'accepted');
  const other = await node.rpc.call<string>('getnewaddress');
  const sameFee = await signAndHex(
    node,
    [{ txid: coin.txid, vout: coin.vout }],
    [{ [other]: Number((coin.amount - 0.001).toFixed(8)) }],
  );
  const [verdict] = await node.rpc.testMempoolAccept([sameFee]);
  assert.equal((verdict as MempoolAcceptResult).allowed, false);
  await assert.rejects(node.rpc.broadcast(sameFee), rpcCode('insufficient_fee'));
  assert.equal(await node.rpc.getTxOut(coin.txid, coin.vout, true), null, 'spent in the mempool');
});

test(
  'block observer on regtest: peg-ins, a payment with change, reorg by invalidateblock, recovery via gettxout',
  { skip },
  async (t) => {
    const node = await startRegtest(t, BITCOIND as string);
    const fedAddress = await node.rpc.call<string>('getnewaddress', ['', 'bech32m']);
    const fedHex = (await node.rpc.call<{ scriptPubKey: string }>('getaddressinfo', [fedAddress])).scriptPubKey;
    const federationScript = Uint8Array.from(Buffer.from(fedHex, 'hex'));
    await mine(node, 110);
    const store = await openTempStore(t);
    const observer = new BitcoinObserver({ store, chain: node.rpc, federationScript, startHeight: 111 });

    const peg1 = await node.rpc.call<string>('sendtoaddress', [fedAddress, 1.5]);
    const peg2 = await node.rpc.call<string>('sendtoaddress', [fedAddress, 0.7]);
    const [pegBlock] = await mine(node, 1);
    assert.equal((await observer.sync()).cursor?.height, 111);
    const fedVout = async (txid: string, blockhash?: string) =>
      (await node.rpc.getRawTransaction(txid, blockhash)).vout.find((o) => o.scriptPubKey.hex === fedHex)?.n as number;
    const out1 = { txid: peg1, vout: await fedVout(peg1, pegBlock) };
    const out2 = { txid: peg2, vout: await fedVout(peg2, pegBlock) };
    assert.deepEqual(
      (await listUnspent(store)).map((u) => [u.value, u.height]).sort((a, b) => Number(a[0]) - Number(b[0])),
      [
        [70_000_000n, 111],
        [150_000_000n, 111],
      ],
    );

    // a federation payment: spends peg-in 1, pays a user, change back to the federation
    const payment = await signAndHex(node, [out1], [{ [node.minerAddress]: 1.0 }, { [fedAddress]: 0.4999 }]);
    const payTxid = await node.rpc.sendRawTransaction(payment);
    const [payBlock] = await mine(node, 1);
    await observer.sync();
    assert.deepEqual([(await getUtxo(store, out1))?.state, (await getUtxo(store, out1))?.spentBy], ['spent', payTxid]);
    const change = { txid: payTxid, vout: await fedVout(payTxid, payBlock) };
    assert.deepEqual(
      [(await getUtxo(store, change))?.value, (await getUtxo(store, change))?.height],
      [49_990_000n, 112],
    );
    await mine(node, 1);
    await observer.sync();
    assert.equal(await observer.confirmations(payTxid), 2);

    // reorg: the payment's block leaves the best chain
    await node.rpc.call('invalidateblock', [payBlock]);
    const rolled = await observer.sync();
    assert.deepEqual([rolled.rolledBack, rolled.applied, rolled.cursor?.height], [2, 0, 111]);
    assert.equal((await getUtxo(store, out1))?.state, 'unspent', 'spend undone');
    assert.equal(await getUtxo(store, change), undefined, 'change output removed');
    assert.equal(await observer.confirmations(payTxid), 0);
    // a new branch (another coinbase address, so no block repeats an invalidated one) re-mines the payment
    await mine(node, 1, await node.rpc.call<string>('getnewaddress'));
    const again = await observer.sync();
    assert.deepEqual([again.applied, again.cursor?.height], [1, 112]);
    assert.equal((await getUtxo(store, out1))?.spentBy, payTxid);
    assert.equal((await getUtxo(store, change))?.height, 112);

    // another member's store that never saw these blocks (it started above them) recovers peg-in 2
    // from the node; only from a block it has applied, so it has a tip
    const late = await openTempStore(t);
    const tip = await node.rpc.call<number>('getblockcount');
    await late
      .batch()
      .put(cursorKey('bitcoin'), { height: tip, hash: await node.rpc.call<string>('getblockhash', [tip]) })
      .write();
    const recovered = await recoverUtxo(late, node.rpc, federationScript, out2);
    assert.deepEqual([recovered.value, recovered.height, recovered.state], [70_000_000n, 111, 'unspent']);
    // the regtest node runs -txindex, so it tells a spent output from one that never existed
    await assert.rejects(
      recoverUtxo(late, node.rpc, federationScript, out1),
      walletCode('utxo_spent'),
      'spent in the chain',
    );
    await assert.rejects(
      recoverUtxo(late, node.rpc, federationScript, { txid: '11'.repeat(32), vout: 0 }),
      walletCode('utxo_unknown'),
      'never existed',
    );
    await assert.rejects(
      recoverUtxo(late, node.rpc, federationScript, { txid: payTxid, vout: 1 - change.vout }),
      walletCode('utxo_not_federation'),
    );
    const peg3 = await node.rpc.call<string>('sendtoaddress', [fedAddress, 0.3]);
    await assert.rejects(
      recoverUtxo(late, node.rpc, federationScript, { txid: peg3, vout: await fedVout(peg3) }),
      walletCode('utxo_unconfirmed'),
    );
  },
);
