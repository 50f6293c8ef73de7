import { requestId } from '../../src/evm/request-id.js';
import type { NewRequest } from '../../src/evm/request-store.js';
import type { RequestRecord } from '../../src/storage/records.js';

/** The fields a test may set; the id is not one of them, so it always names txHash and ordinal. */
export type TestRequestFields = Partial<Omit<RequestRecord, 'history' | 'id'>> & {
  readonly txHash: string;
  readonly sats: bigint;
};

/**
 * A peg-out request record as stageNewRequest takes it: an accepted request of `sats` in
 * `txHash`, ordinal 0, EVM block 1. The defaults are only placeholders that no test reads (wei
 * and the sub-satoshi rest of 0, a dummy Bitcoin address); a test that checks one sets it.
 */
export function testRequest(fields: TestRequestFields): NewRequest {
  const ordinal = fields.ordinal ?? 0;
  const blockNumber = fields.blockNumber ?? 1;
  return {
    evmAddress: `0x${'11'.repeat(20)}`,
    bitcoinAddress: 'x',
    wei: '0',
    subSatoshiWei: '0',
    status: 'accepted',
    blockHash: `0x${blockNumber.toString(16).padStart(64, '0')}`,
    ...fields,
    id: requestId(fields.txHash, ordinal),
    ordinal,
    blockNumber,
  };
}
