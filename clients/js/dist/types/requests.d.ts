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
import type { AckFrame, ClientFrame, ErrorFrame, PongFrame } from "./frames.js";
/** Default `requestTimeoutMs`. */
export declare const DEFAULT_REQUEST_TIMEOUT_MS = 10000;
/** Default `maxPendingRequests`. */
export declare const DEFAULT_MAX_PENDING_REQUESTS = 1000;
export type Reply = AckFrame | PongFrame;
export declare class Requests {
    #private;
    constructor(timeoutMs: number, maxPending: number);
    /**
     * A new request for `frame`. `send` is called with the wire text now if
     * `canSend`, else later by {@link flush}.
     */
    create(frame: ClientFrame, canSend: boolean, send: (text: string) => void, internal?: boolean): Promise<Reply>;
    /** Send every queued request, oldest first. */
    flush(send: (text: string) => void): void;
    /** Settle the request a reply names; false if no request waits for it (late or unknown). */
    settle(frame: AckFrame | ErrorFrame | PongFrame): boolean;
    /** The connection dropped: reject every request that was sent on it. Queued ones wait. */
    disconnected(reason: string): void;
    /** Reject every request. */
    closeAll(reason: string): void;
}
