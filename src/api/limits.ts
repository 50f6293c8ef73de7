/**
 * What anyone who reaches the API port can make the member hold. Every connection is a descriptor
 * of the process that also holds the store, the links and the RPC clients, so their number is
 * capped, in all and from one address (an IPv6 /64), and a client that does not finish its request
 * in time is closed (Node's own defaults hold a silent one for 90 s and a slow one for 5 minutes).
 */
export const API_LIMITS = {
  connections: 512,
  connectionsPerAddress: 32,
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  /**
   * Lookups (answers that read records: /pegouts, /federation, /overview, /reserves; and /metrics) from one address,
   * after a burst of five seconds' worth; past it a 429 with Retry-After. A page polls every 5 s;
   * config api.lookupsPerSecond. A page of more than 20 requests costs a lookup for every 20
   * (lookupCost, src/api/lookup.ts).
   */
  lookupsPerSecond: 10,
  /**
   * Lookups from every address together, after a burst of five seconds' worth: the store reads
   * synchronously on the thread that validates and signs, and a client with many addresses (an IPv6
   * /48 holds 65,536 /64 groups) is held by no per-address rate. 100 a second is 500 pages polling
   * every 5 s for 20 requests each, 100 for 100 each; config api.lookupsPerSecondTotal.
   */
  lookupsPerSecondTotal: 100,
};
