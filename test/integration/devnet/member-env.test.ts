import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { memberProcessEnv } from '../../../src/devnet/federation.js';

describe('devnet member processes', () => {
  it('inherit PATH, HOME, NODE_OPTIONS and PEGOUT_SECP256K1 from the devnet, and nothing else', () => {
    const devnet: NodeJS.ProcessEnv = {
      PATH: '/usr/bin',
      HOME: '/home/op',
      NODE_OPTIONS: '--max-old-space-size=512',
      PEGOUT_SECP256K1: 'js',
      EVM_KEY: '0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d',
      PEGOUT_MEMBER_KEY: '11'.repeat(32),
      PEGOUT_API_PORT: '1',
      AWS_SECRET_ACCESS_KEY: 'secret',
    };
    assert.deepEqual(memberProcessEnv(devnet), {
      PATH: '/usr/bin',
      HOME: '/home/op',
      NODE_OPTIONS: '--max-old-space-size=512',
      PEGOUT_SECP256K1: 'js',
    });
    // the devnet's own settings for its members come last
    assert.deepEqual(memberProcessEnv(devnet, { PEGOUT_SECP256K1: 'native' }).PEGOUT_SECP256K1, 'native');
    // what the devnet does not have set stays unset
    assert.deepEqual(memberProcessEnv({ PATH: '/usr/bin' }), { PATH: '/usr/bin' });
  });
});
