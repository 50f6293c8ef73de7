import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { freePorts } from '../../../src/evm/anvil.js';

test('freePorts gives distinct loopback ports, each free to listen on once it returns', async () => {
  for (let round = 0; round < 5; round++) {
    const ports = await freePorts(40);
    assert.equal(new Set(ports).size, 40, `round ${round}: ${ports.join(',')}`);
    const servers = ports.map(() => createServer());
    await Promise.all(
      servers.map(
        (server, i) =>
          new Promise<void>((resolve, reject) => {
            server.once('error', reject);
            server.listen(ports[i], '127.0.0.1', resolve);
          }),
      ),
    );
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
});
