/**
 * A node's RPC URL as errors and logs show it: scheme, host and port. User info is a password,
 * and a hosted provider puts its API key in the path (/v2/<key>) or the query, so neither is
 * shown. `withPath` is for Bitcoin Core, whose path names a wallet (/wallet/<name>): no secret,
 * and it tells an operator which wallet answered.
 */
export function shownRpcUrl(url: URL, { withPath = false } = {}): string {
  return url.origin + (withPath && url.pathname !== '/' ? url.pathname : '');
}
