import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { parseRequestId } from '../evm/request-id.js';
import type { StatusSource } from './status.js';

export interface ApiServer {
  readonly port: number;
  close(): Promise<void>;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
}

function badRequest(res: ServerResponse, parameter: string, value: string | null, expected: string): void {
  json(res, 400, { error: 'bad_request', parameter, value, expected });
}

/**
 * The member's HTTP API: /health, /metrics (Prometheus), /pegouts/:id, /pegouts?evmAddress=,
 * /federation, /reserves. Read-only; every answer is JSON except /metrics.
 */
export async function startApi(options: {
  host: string;
  port: number;
  source: StatusSource;
  registry: Registry;
}): Promise<ApiServer> {
  const { source, registry } = options;
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    if (req.method !== 'GET') return json(res, 405, { error: 'method_not_allowed', allowed: 'GET' });
    if (url.pathname === '/health') {
      const h = await source.health();
      return json(res, h.ok ? 200 : 503, h);
    }
    if (url.pathname === '/metrics') {
      res.writeHead(200, { 'content-type': registry.contentType });
      res.end(await registry.metrics());
      return;
    }
    if (url.pathname === '/federation') return json(res, 200, await source.federation());
    if (url.pathname === '/reserves') {
      const report = await source.reserves();
      return report ? json(res, 200, report) : json(res, 404, { error: 'not_found', path: url.pathname });
    }
    if (url.pathname === '/pegouts') {
      const evmAddress = url.searchParams.get('evmAddress');
      if (!evmAddress || !/^0x[0-9a-fA-F]{40}$/.test(evmAddress))
        return badRequest(res, 'evmAddress', evmAddress, '0x followed by 40 hex characters');
      const limitText = url.searchParams.get('limit') ?? '100';
      const limit = Number(limitText);
      if (!Number.isInteger(limit) || limit < 1 || limit > 1000)
        return badRequest(res, 'limit', limitText, 'an integer from 1 to 1000');
      return json(res, 200, {
        evmAddress: evmAddress.toLowerCase(),
        pegouts: await source.pegoutsByEvmAddress(evmAddress, limit),
      });
    }
    const one = /^\/pegouts\/([^/]+)$/.exec(url.pathname);
    if (one) {
      const id = decodeURIComponent(one[1]!);
      try {
        parseRequestId(id);
      } catch {
        return badRequest(res, 'id', id, '<0x tx hash>:<ordinal>');
      }
      const status = await source.pegout(id);
      return status ? json(res, 200, status) : json(res, 404, { error: 'not_found', id });
    }
    return json(res, 404, { error: 'not_found', path: url.pathname });
  };
  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => json(res, 500, { error: 'internal', message: err.message }));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, resolve);
  });
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : options.port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
