import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';

// A local HTTP server that answers EVM JSON-RPC as a test tells it to: a node that is slow, drops
// connections or answers wrongly, for the EVM client and observer.

export type Answer = (
  body: { id: number; method: string; params: unknown[] },
  res: ServerResponse,
  req: IncomingMessage,
) => void;

/** The server, closed after the test; `sockets` counts the connections it accepted. */
export async function evmNode(t: TestContext, answer: Answer): Promise<{ url: string; sockets: () => number }> {
  let sockets = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => answer(JSON.parse(Buffer.concat(chunks).toString('utf8')), res, req));
  });
  server.on('connection', () => sockets++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, sockets: () => sockets };
}
