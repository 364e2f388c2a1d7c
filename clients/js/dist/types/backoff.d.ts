/**
 * Reconnect delays: full-jitter exponential backoff.
 *
 * The n-th consecutive failed attempt (n = 0, 1, ...) waits a uniformly
 * random time in `[0, min(maxMs, minMs * 2^n)]`. The randomness spreads a
 * crowd of clients that lost the same server over the whole window, so
 * they do not come back in one wave.
 */
/** Default `minReconnectDelayMs`: the window of the first retry. */
export declare const DEFAULT_MIN_RECONNECT_DELAY_MS = 500;
/** Default `maxReconnectDelayMs`: the largest window. */
export declare const DEFAULT_MAX_RECONNECT_DELAY_MS = 20000;
/** The delay before retry number `attempt` (0-based). */
export declare function backoffDelay(attempt: number, minMs: number, maxMs: number, random?: () => number): number;
