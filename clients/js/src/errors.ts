/**
 * Errors of the client.
 *
 * Every rejected promise of this package rejects with a {@link ShardcastError}.
 * Its `code` is either the server's error code (the protocol's stable
 * contract: `forbidden`, `not_member`, `room_not_found`, `rate_limited`, ...)
 * or one of the client's own codes below.
 */

/** Codes the client itself produces (never sent by a server). */
export const CLIENT_CODES = {
  /** No reply within `requestTimeoutMs`. The operation may still have taken effect. */
  timeout: "timeout",
  /** The connection dropped while the request was in flight: it may or may not have taken effect. */
  disconnected: "disconnected",
  /** `client.close()` was called, or the client stopped for good. */
  closed: "closed",
  /** `maxPendingRequests` requests are already waiting for a reply. */
  queueFull: "queue_full",
} as const;

/** An error with the server's (or the client's) error code. */
export class ShardcastError extends Error {
  /** The stable error code (see the module docs). */
  readonly code: string;

  constructor(code: string, message: string) {
    super(message);
    this.name = "ShardcastError";
    this.code = code;
  }
}
