/**
 * Reconnect delays: full-jitter exponential backoff.
 *
 * The n-th consecutive failed attempt (n = 0, 1, ...) waits a uniformly
 * random time in `[0, min(maxMs, minMs * 2^n)]`. The randomness spreads a
 * crowd of clients that lost the same server over the whole window, so
 * they do not come back in one wave.
 */

/** Default `minReconnectDelayMs`: the window of the first retry. */
export const DEFAULT_MIN_RECONNECT_DELAY_MS = 500;
/** Default `maxReconnectDelayMs`: the largest window. */
export const DEFAULT_MAX_RECONNECT_DELAY_MS = 20_000;

/** The delay before retry number `attempt` (0-based). */
export function backoffDelay(
  attempt: number,
  minMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const window = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * Math.max(0, window));
}
