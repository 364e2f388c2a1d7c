/**
 * The client: one logical connection to a shardcast server that survives
 * network cuts, server restarts and drains.
 *
 * Life cycle (`state` events):
 *
 *     connect() → connecting → connected ─(drop)→ disconnected ─(delay)→ connecting → …
 *                                  └──────────(close(), kick, 4xx)──────────→ closed
 *
 * Invariants:
 * - At most one WebSocket at a time; callbacks of an older one are ignored.
 * - Every request settles (see `requests.ts`); every buffer is bounded by a
 *   named option (`maxPendingRequests`, `maxBufferedMessages`).
 * - After each welcome, every joined room is rejoined (with `since` and,
 *   on v1.1 servers, `epoch`) before any queued request is sent, so a
 *   publish made while disconnected reaches a room the connection is in.
 * - Liveness: a connection that brings no traffic for `heartbeat_ms` (from
 *   `welcome`) plus `heartbeatMarginMs` is dead and replaced. An idle client
 *   sends an application `ping` after half of `heartbeat_ms` so a healthy
 *   server always has something to answer; browsers cannot see the
 *   server's WebSocket pings, so this does not rely on them.
 * - Tokens: `getToken` is called before every connection attempt, and again
 *   before the token's `exp` to send `refresh` (v1.1 servers) or, on v1
 *   servers, to reconnect with the new token.
 */
import { Emitter } from "./emitter.js";
import { type BroadcastFrame, type DirectFrame, type ErrorFrame, type Json, type NotificationFrame, type WelcomeFrame } from "./frames.js";
import { Room } from "./room.js";
/** Default `connectTimeoutMs`: from opening the socket to the `welcome` frame. */
export declare const DEFAULT_CONNECT_TIMEOUT_MS = 10000;
/** Default `heartbeatMarginMs`: silence tolerated beyond the server's `heartbeat_ms`. */
export declare const DEFAULT_HEARTBEAT_MARGIN_MS = 10000;
/** Default `refreshBeforeExpiryMs`: how long before `exp` a token is refreshed (at most half its remaining life). */
export declare const DEFAULT_REFRESH_BEFORE_EXPIRY_MS = 30000;
/** Default `unknownFailureDelayMs`: the least wait after a failure whose cause is invisible (browsers); the broker's `Retry-After` is 1 s. */
export declare const DEFAULT_UNKNOWN_FAILURE_DELAY_MS = 1000;
export interface ClientOptions {
    /** Dev mode (`auth.mode = "none"`): the user id, sent as `?user=`. */
    user?: string;
    /** Dev mode: the display name, sent as `?name=`. */
    name?: string;
    /** Called before every connection attempt, and before the token's `exp` to refresh it. */
    getToken?: () => Promise<string>;
    /** The WebSocket implementation: required where there is no global one (Node < 22: `ws`). */
    WebSocket?: unknown;
    /** First backoff window (ms). Default 500. */
    minReconnectDelayMs?: number;
    /** Largest backoff window (ms). Default 20000. */
    maxReconnectDelayMs?: number;
    /** How long a request waits for its reply (ms). Default 10000. */
    requestTimeoutMs?: number;
    /** Requests waiting for a reply, sent or queued while disconnected. Default 1000. */
    maxPendingRequests?: number;
    /** Live messages held per room while its join is in flight. Default 1000. */
    maxBufferedMessages?: number;
    /** From opening a socket to its `welcome` (ms). Default 10000. */
    connectTimeoutMs?: number;
    /** Silence tolerated beyond the server's `heartbeat_ms` before the connection counts as dead (ms). Default 10000. */
    heartbeatMarginMs?: number;
    /** Refresh the token this long before its `exp` (ms; at most half its remaining life). Default 30000. */
    refreshBeforeExpiryMs?: number;
    /** Least wait after a connection failure whose cause the WebSocket API hides (ms). Default 1000. */
    unknownFailureDelayMs?: number;
}
export type ClientState = "connecting" | "connected" | "disconnected" | "closed";
export interface StateEvent {
    state: ClientState;
    /** Why (for `disconnected` and `closed`). */
    reason?: string;
    /** The close code, when the server closed. */
    code?: number;
    /** For `disconnected`: the wait before the next attempt. */
    delayMs?: number;
}
export interface ClientEvents {
    state: StateEvent;
    direct: DirectFrame;
    broadcast: BroadcastFrame;
    notification: NotificationFrame;
    /** An `error` frame that answers no request (a frame sent without `id`). */
    error: ErrorFrame;
    /** Each welcome frame (one per connection). */
    welcome: WelcomeFrame;
    /** A token refresh succeeded; `exp` is the new expiry (Unix seconds). */
    refreshed: {
        exp: number;
    };
}
export declare class Client extends Emitter<ClientEvents> {
    #private;
    readonly url: string;
    constructor(url: string, options?: ClientOptions);
    /** The current state. */
    get state(): ClientState;
    /** The current connection's `welcome` (conn, user, node, protocol, ...), if connected. */
    get welcome(): WelcomeFrame | undefined;
    /** Start connecting (and reconnecting until {@link close}). Idempotent. */
    connect(): void;
    /** Close for good: rejects every pending request with `closed`; rooms are left. */
    close(): void;
    /** The handle of room `name` (one per name; joining is explicit: `room.join()`). */
    room(name: string): Room;
    /** A direct message to every connection of `user`. */
    send(user: string, data: Json): Promise<void>;
    /** A `broadcast` to every connection (needs the `broadcast` right). */
    broadcast(data: Json): Promise<void>;
    /** An application-level ping; resolves with the round trip in ms. */
    ping(): Promise<number>;
}
