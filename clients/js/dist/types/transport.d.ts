/**
 * One WebSocket connection attempt, over whichever WebSocket implementation
 * the caller has (the browser's, Node 22's global, or the `ws` package).
 *
 * What a refused upgrade looks like depends on the implementation:
 *
 * - `ws` (Node): the HTTP response of a refused upgrade is readable
 *   (`unexpected-response`), so {@link Refusal} carries the status, the
 *   `Retry-After` header and the body's error `code`.
 * - Browsers and Node 22's built-in WebSocket: the page cannot see the HTTP
 *   status of a refused upgrade (by design of the WebSocket API): a refusal
 *   looks like a network failure, close code 1006 before `open`. The
 *   client then treats it as "unknown" (see `Client`).
 *
 * Invariant: exactly one `onClose` per attempt, after which no callback runs.
 */
/** The part of the WebSocket API the client uses. */
export interface WebSocketLike {
    readonly readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    onopen: ((ev: unknown) => void) | null;
    onmessage: ((ev: {
        data: unknown;
    }) => void) | null;
    onclose: ((ev: {
        code: number;
        reason: string;
    }) => void) | null;
    onerror: ((ev: unknown) => void) | null;
}
/** A WebSocket constructor: the global `WebSocket`, or `ws`'s default export. */
export type WebSocketConstructor = new (url: string) => WebSocketLike;
/** An HTTP refusal of the upgrade, when the implementation lets us see it. */
export interface Refusal {
    status: number;
    /** The `Retry-After` header, in ms. */
    retryAfterMs?: number;
    /** `error.code` of the JSON body. */
    code?: string;
    /** `error.message` of the JSON body. */
    message?: string;
}
/** How an attempt ended. */
export interface Closed {
    code: number;
    reason: string;
    /** True if the WebSocket opened (the upgrade succeeded). */
    opened: boolean;
    refusal?: Refusal;
}
export interface TransportHandlers {
    onOpen(): void;
    onText(text: string): void;
    /** Any sign of life from the server that is not a text frame (a ping, when visible). */
    onTraffic(): void;
    onClose(closed: Closed): void;
}
/** One connection attempt. */
export declare class Transport {
    #private;
    /** True if refused upgrades are visible (the `ws` package), see the module docs. */
    readonly refusalsVisible: boolean;
    constructor(Impl: WebSocketConstructor, url: string, handlers: TransportHandlers);
    /** True once the WebSocket is open (and not closed). */
    get open(): boolean;
    send(text: string): void;
    /** Close with a code the client may send (1000, or 3000-4999). */
    close(code?: number, reason?: string): void;
    /**
     * End the attempt now and report `code`/`reason`, without waiting for the
     * server's close frame (a dead connection never sends one).
     */
    abandon(handlers: TransportHandlers, code: number, reason: string): void;
}
/** `Retry-After` in seconds (the broker's form) or as an HTTP date, in ms. */
export declare function parseRetryAfter(value: string | string[] | undefined): number | undefined;
