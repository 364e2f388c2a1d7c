/**
 * What to do after a connection ends: reconnect (after how long) or stop
 * for good. One pure function, so every rule is in one place.
 *
 * | how it ended | decision |
 * |---|---|
 * | refused 503 (`server_full`, draining) | reconnect after `Retry-After` plus a backoff delay |
 * | refused 429 or another 5xx | reconnect after a backoff delay |
 * | refused with another 4xx (400, 401, 403, 404) | stop: retrying cannot help |
 * | failed before `open`, cause invisible (browsers) | reconnect after `unknownFailureDelayMs` plus a backoff delay: it may have been a 503 whose `Retry-After` we cannot read |
 * | failed before `open`, no HTTP answer (`ws`: connection refused, reset) | reconnect after a backoff delay |
 * | closed 1008 `token expired`, with `getToken` | reconnect at once (jittered) with a new token |
 * | closed 1008 otherwise (kicked by the API) | stop |
 * | closed 1001 (drain) | reconnect at once (jittered: the first backoff window) |
 * | any other close after `open` | reconnect after a backoff delay |
 */
import type { Closed } from "./transport.js";
export interface PolicyContext {
    /** Consecutive failed attempts so far (0 after a welcome). */
    attempt: number;
    minDelayMs: number;
    maxDelayMs: number;
    unknownFailureDelayMs: number;
    hasTokenSource: boolean;
    /** The implementation reports refused upgrades (the `ws` package). */
    refusalsVisible: boolean;
    random?: () => number;
}
export type Decision = {
    reconnect: true;
    delayMs: number;
    reason: string;
} | {
    reconnect: false;
    reason: string;
};
/** The close reason the broker gives when a connection's token expires. */
export declare const TOKEN_EXPIRED_REASON = "token expired";
export declare function afterClose(closed: Closed, ctx: PolicyContext): Decision;
