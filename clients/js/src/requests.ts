/**
 * Requests: frames sent with an `id` and waiting for their `ack`, `error`
 * or `pong`.
 *
 * Invariants:
 * - Every request settles exactly once: on its reply, on its timeout, on a
 *   disconnect (if it was sent), or when the client closes. None hangs.
 * - At most `maxPending` application requests exist at once (sent or
 *   queued); one more rejects at once with `queue_full`. The queue of
 *   requests made while disconnected is therefore bounded too. The client's
 *   own requests (rejoins, token refresh) do not count: they are bounded by
 *   the number of rooms, and a full queue must never stop a rejoin.
 * - Queued requests are sent in the order they were made.
 */

import { CLIENT_CODES, ShardcastError } from "./errors.js";
import type { AckFrame, ClientFrame, ErrorFrame, PongFrame } from "./frames.js";

/** Default `requestTimeoutMs`. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** Default `maxPendingRequests`. */
export const DEFAULT_MAX_PENDING_REQUESTS = 1000;

export type Reply = AckFrame | PongFrame;

interface Pending {
  id: number;
  frame: ClientFrame;
  sent: boolean;
  internal: boolean;
  resolve(reply: Reply): void;
  reject(error: ShardcastError): void;
  timer: ReturnType<typeof setTimeout>;
}

export class Requests {
  #nextId = 1;
  #pending = new Map<number, Pending>();
  /** Pending requests that are not internal (the ones `maxPending` bounds). */
  #appCount = 0;
  readonly #timeoutMs: number;
  readonly #maxPending: number;

  constructor(timeoutMs: number, maxPending: number) {
    this.#timeoutMs = timeoutMs;
    this.#maxPending = maxPending;
  }

  /**
   * A new request for `frame`. `send` is called with the wire text now if
   * `canSend`, else later by {@link flush}.
   */
  create(frame: ClientFrame, canSend: boolean, send: (text: string) => void, internal = false): Promise<Reply> {
    if (!internal && this.#appCount >= this.#maxPending) {
      return Promise.reject(
        new ShardcastError(CLIENT_CODES.queueFull, `${this.#maxPending} requests are already waiting for a reply`),
      );
    }
    const id = this.#nextId++;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#remove(pending);
        reject(new ShardcastError(CLIENT_CODES.timeout, `no reply to ${frame.type} within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
      const pending: Pending = { id, frame, sent: false, internal, resolve, reject, timer };
      this.#pending.set(id, pending);
      if (!internal) this.#appCount += 1;
      if (canSend) this.#send(pending, send);
    });
  }

  /** Send every queued request, oldest first. */
  flush(send: (text: string) => void): void {
    for (const pending of this.#pending.values()) {
      if (!pending.sent) this.#send(pending, send);
    }
  }

  /** Settle the request a reply names; false if no request waits for it (late or unknown). */
  settle(frame: AckFrame | ErrorFrame | PongFrame): boolean {
    if (frame.id === undefined) return false;
    const pending = this.#pending.get(frame.id);
    if (!pending) return false;
    this.#remove(pending);
    if (frame.type === "error") pending.reject(new ShardcastError(frame.code, frame.message));
    else pending.resolve(frame);
    return true;
  }

  /** The connection dropped: reject every request that was sent on it. Queued ones wait. */
  disconnected(reason: string): void {
    for (const pending of [...this.#pending.values()]) {
      if (pending.sent) this.#fail(pending, CLIENT_CODES.disconnected, `disconnected before the reply (${reason})`);
    }
  }

  /** Reject every request. */
  closeAll(reason: string): void {
    for (const pending of [...this.#pending.values()]) this.#fail(pending, CLIENT_CODES.closed, reason);
  }

  #remove(pending: Pending): void {
    if (this.#pending.delete(pending.id) && !pending.internal) this.#appCount -= 1;
    clearTimeout(pending.timer);
  }

  #send(pending: Pending, send: (text: string) => void): void {
    pending.sent = true;
    send(JSON.stringify({ ...pending.frame, id: pending.id }));
  }

  #fail(pending: Pending, code: string, message: string): void {
    this.#remove(pending);
    pending.reject(new ShardcastError(code, message));
  }
}
