/**
 * Caps on what a peer, or anyone who can reach the link port, can make a member hold at the link
 * layer. Fixed, not configured: each is sized from the protocol, not from a deployment. (Frame
 * size, rates, the handshake deadline and bans are NetworkLimits.)
 */
export const LINK_CAPS = {
  /**
   * Inbound connections from TCP accept until authenticated, all addresses together. An honest
   * member needs at most two at a time (its dial and a redial racing a dying link), so 64 serves
   * federations of thirty and more through restarts, while strangers filling it hold only 64 TLS
   * sessions of at most handshakeBytes each. When it is full, a new connection pushes out the oldest
   * of those that got least far (admission.ts): strangers' silent connections push out each other.
   */
  pendingConnections: 64,
  /** Addresses members' links authenticated from, whose pending connections strangers' push out last. */
  memberAddresses: 256,
  /**
   * A pending connection younger than this is pushed out only when all are: an honest handshake takes
   * a few round trips (about 1.5 to its TLS), and ranked at once a member's dial was pushed out by any
   * stranger whose TLS was done.
   */
  handshakeGraceMs: 1_000,
  /** The same from one remote address: filling pendingConnections takes eight addresses. */
  pendingPerAddress: 8,
  /**
   * New connections from one remote address (an IPv6 address's /64), admitted or not: each that
   * gets as far as TLS costs a key exchange, so without a rate one address could keep a core busy.
   * A member dials each peer once, and again after a backoff; 32 at once covers a restart of a host
   * running many members, then 4 a second.
   */
  newConnectionsPerAddress: { perSecond: 4, burst: 32 },
  /** Addresses whose connection rate is tracked; past it the longest tracked is forgotten. */
  trackedAddresses: 4096,
  /** Bytes a connection may send before it authenticates: hello and proof are under 300 with framing. */
  handshakeBytes: 4096,
  /**
   * Frames from one peer waiting for the frame handler. A catch-up burst (announced payments, a
   * round's signatures) is tens to hundreds; more means the peer sends faster than this member
   * handles, and keeping the excess would only grow memory.
   */
  queuedFrames: 1024,
  /** Bytes of those frames: eight of the largest (4 MiB by default), whatever their number. */
  queuedBytes: 32 * 1024 * 1024,
  /**
   * Bytes waiting in a link's socket to go to its peer. A peer that stops reading would otherwise
   * make this member hold every frame it sends it; past this (sixteen of the largest frames, far
   * above a turn's proposals and a reconnect's announcements) the link is dropped, and the peer
   * catches up from the announcements when it links again.
   */
  outboundBytes: 64 * 1024 * 1024,
} as const;
