/**
 * shardcast-client: the JavaScript/TypeScript client of the shardcast
 * WebSocket room broker. No runtime dependencies; runs in browsers and in
 * Node 20+ (pass `WebSocket` from the `ws` package before Node 22).
 *
 * @example
 * ```ts
 * import { Client } from "shardcast-client";
 * const client = new Client("ws://127.0.0.1:8080/ws", { user: "alice" });
 * const lobby = client.room("lobby");
 * lobby.on("message", (m) => console.log(m.seq, m.from, m.data));
 * lobby.on("resumed", ({ recovered }) => { if (!recovered) reloadState(); });
 * client.connect();
 * await lobby.join();
 * await lobby.publish({ text: "hi" });
 * ```
 */

export { Client } from "./client.js";
export type { ClientEvents, ClientOptions, ClientState, StateEvent } from "./client.js";
export {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_MARGIN_MS,
  DEFAULT_REFRESH_BEFORE_EXPIRY_MS,
  DEFAULT_UNKNOWN_FAILURE_DELAY_MS,
} from "./client.js";
export { DEFAULT_MAX_RECONNECT_DELAY_MS, DEFAULT_MIN_RECONNECT_DELAY_MS, backoffDelay } from "./backoff.js";
export { CLIENT_CODES, ShardcastError } from "./errors.js";
export type * from "./frames.js";
export { DEFAULT_MAX_PENDING_REQUESTS, DEFAULT_REQUEST_TIMEOUT_MS } from "./requests.js";
export { Room, DEFAULT_MAX_BUFFERED_MESSAGES } from "./room.js";
export type { JoinOptions, JoinResult, Member, RoomEvents } from "./room.js";
export type { Refusal, WebSocketLike } from "./transport.js";
