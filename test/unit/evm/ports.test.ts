import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { freePorts } from '../../../src/evm/anvil.js';

test('freePorts gives distinct loopback ports below the ephemeral range, each free to listen on once it returns', async () => {
  const [low] = (await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/).map(Number);
  const seen = new Set<number>();
  for (let round = 0; round < 5; round++) {
    const ports = await freePorts(40);
    for (const port of ports) seen.add(port);
    assert.equal(seen.size, 40 * (round + 1), `round ${round}: never the same port twice in one process`);
    if (low! - 20_000 >= 1000)
      assert.ok(
        ports.every((p) => p >= 20_000 && p < low!),
        ports.join(','),
      );
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

test('concurrent freePorts calls never share a port', async () => {
  const batches = await Promise.all(Array.from({ length: 8 }, () => freePorts(10)));
  const all = batches.flat();
  assert.equal(new Set(all).size, all.length, all.join(','));
});
