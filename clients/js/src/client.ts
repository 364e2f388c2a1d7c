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

import { DEFAULT_MAX_RECONNECT_DELAY_MS, DEFAULT_MIN_RECONNECT_DELAY_MS } from "./backoff.js";
import { Emitter } from "./emitter.js";
import { CLIENT_CODES, ShardcastError } from "./errors.js";
import {
  parseFrame,
  speaksAtLeast,
  type BroadcastFrame,
  type ClientFrame,
  type DirectFrame,
  type ErrorFrame,
  type Json,
  type NotificationFrame,
  type ServerFrame,
  type WelcomeFrame,
} from "./frames.js";
import { afterClose } from "./policy.js";
import { DEFAULT_MAX_PENDING_REQUESTS, DEFAULT_REQUEST_TIMEOUT_MS, Requests, type Reply } from "./requests.js";
import { DEFAULT_MAX_BUFFERED_MESSAGES, Room, type RoomHost } from "./room.js";
import { tokenExpiry } from "./token.js";
import { Transport, type Closed, type TransportHandlers, type WebSocketConstructor } from "./transport.js";

/** Default `connectTimeoutMs`: from opening the socket to the `welcome` frame. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
/** Default `heartbeatMarginMs`: silence tolerated beyond the server's `heartbeat_ms`. */
export const DEFAULT_HEARTBEAT_MARGIN_MS = 10_000;
/** Default `refreshBeforeExpiryMs`: how long before `exp` a token is refreshed (at most half its remaining life). */
export const DEFAULT_REFRESH_BEFORE_EXPIRY_MS = 30_000;
/** Default `unknownFailureDelayMs`: the least wait after a failure whose cause is invisible (browsers); the broker's `Retry-After` is 1 s. */
export const DEFAULT_UNKNOWN_FAILURE_DELAY_MS = 1000;
/** Wait before retrying a refused or failed token refresh. */
const REFRESH_RETRY_MS = 5000;

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
  refreshed: { exp: number };
}

interface Settings {
  minReconnectDelayMs: number;
  maxReconnectDelayMs: number;
  requestTimeoutMs: number;
  maxPendingRequests: number;
  maxBufferedMessages: number;
  connectTimeoutMs: number;
  heartbeatMarginMs: number;
  refreshBeforeExpiryMs: number;
  unknownFailureDelayMs: number;
}

export class Client extends Emitter<ClientEvents> {
  readonly url: string;
  readonly #options: ClientOptions;
  readonly #settings: Settings;
  readonly #requests: Requests;
  readonly #rooms = new Map<string, Room>();
  readonly #host: RoomHost;
  #state: ClientState = "disconnected";
  #running = false;
  #attempt = 0;
  #transport: Transport | undefined;
  #handlers: TransportHandlers | undefined;
  #welcome: WelcomeFrame | undefined;
  #token: string | undefined;
  #lastRx = 0;
  #lastPing = 0;
  #restartNow = false;
  #timers: {
    reconnect?: ReturnType<typeof setTimeout>;
    connect?: ReturnType<typeof setTimeout>;
    refresh?: ReturnType<typeof setTimeout>;
    liveness?: ReturnType<typeof setInterval>;
  } = {};

  constructor(url: string, options: ClientOptions = {}) {
    super();
    this.url = url;
    this.#options = options;
    this.#settings = {
      minReconnectDelayMs: options.minReconnectDelayMs ?? DEFAULT_MIN_RECONNECT_DELAY_MS,
      maxReconnectDelayMs: options.maxReconnectDelayMs ?? DEFAULT_MAX_RECONNECT_DELAY_MS,
      requestTimeoutMs: options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS,
      maxPendingRequests: options.maxPendingRequests ?? DEFAULT_MAX_PENDING_REQUESTS,
      maxBufferedMessages: options.maxBufferedMessages ?? DEFAULT_MAX_BUFFERED_MESSAGES,
      connectTimeoutMs: options.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
      heartbeatMarginMs: options.heartbeatMarginMs ?? DEFAULT_HEARTBEAT_MARGIN_MS,
      refreshBeforeExpiryMs: options.refreshBeforeExpiryMs ?? DEFAULT_REFRESH_BEFORE_EXPIRY_MS,
      unknownFailureDelayMs: options.unknownFailureDelayMs ?? DEFAULT_UNKNOWN_FAILURE_DELAY_MS,
    };
    this.#requests = new Requests(this.#settings.requestTimeoutMs, this.#settings.maxPendingRequests);
    const client = this;
    this.#host = {
      get connected() {
        return client.#welcome !== undefined;
      },
      get speaksEpochs() {
        return speaksAtLeast(client.#welcome?.protocol, 1, 1);
      },
      maxBufferedMessages: this.#settings.maxBufferedMessages,
      requestTimeoutMs: this.#settings.requestTimeoutMs,
      request: (frame) => this.#request(frame),
      sendJoin: (frame) => this.#requests.create(frame, true, (text) => this.#send(text), true),
      abandon: (reason) => this.#abandon(reason),
    };
  }

  /** The current state. */
  get state(): ClientState {
    return this.#state;
  }

  /** The current connection's `welcome` (conn, user, node, protocol, ...), if connected. */
  get welcome(): WelcomeFrame | undefined {
    return this.#welcome;
  }

  /** Start connecting (and reconnecting until {@link close}). Idempotent. */
  connect(): void {
    if (this.#running) return;
    this.#running = true;
    this.#attempt = 0;
    void this.#open();
  }

  /** Close for good: rejects every pending request with `closed`; rooms are left. */
  close(): void {
    if (!this.#running && this.#state === "closed") return;
    this.#stop("closed by the application");
  }

  /** The handle of room `name` (one per name; joining is explicit: `room.join()`). */
  room(name: string): Room {
    let room = this.#rooms.get(name);
    if (!room) {
      room = new Room(name, this.#host);
      this.#rooms.set(name, room);
    }
    return room;
  }

  /** A direct message to every connection of `user`. */
  async send(user: string, data: Json): Promise<void> {
    await this.#request({ type: "send", to: user, data });
  }

  /** A `broadcast` to every connection (needs the `broadcast` right). */
  async broadcast(data: Json): Promise<void> {
    await this.#request({ type: "broadcast", data });
  }

  /** An application-level ping; resolves with the round trip in ms. */
  async ping(): Promise<number> {
    const started = Date.now();
    await this.#request({ type: "ping" });
    return Date.now() - started;
  }

  #request(frame: ClientFrame): Promise<Reply> {
    if (!this.#running) {
      return Promise.reject(new ShardcastError(CLIENT_CODES.closed, "the client is not running: call connect()"));
    }
    return this.#requests.create(frame, this.#welcome !== undefined, (text) => this.#send(text));
  }

  #send(text: string): void {
    this.#transport?.send(text);
  }

  #setState(state: ClientState, extra: Omit<StateEvent, "state"> = {}): void {
    this.#state = state;
    this.emit("state", { state, ...extra });
  }

  #webSocketImpl(): WebSocketConstructor {
    const impl = this.#options.WebSocket ?? (globalThis as { WebSocket?: unknown }).WebSocket;
    if (typeof impl !== "function") {
      throw new ShardcastError(
        "no_websocket",
        "no WebSocket implementation: pass one as the `WebSocket` option (Node < 22: import WebSocket from \"ws\")",
      );
    }
    return impl as WebSocketConstructor;
  }

  #connectUrl(token: string | undefined): string {
    const url = new URL(this.url);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    if (this.#options.user !== undefined) url.searchParams.set("user", this.#options.user);
    if (this.#options.name !== undefined) url.searchParams.set("name", this.#options.name);
    if (token !== undefined) url.searchParams.set("token", token);
    return url.toString();
  }

  async #open(): Promise<void> {
    this.#timers.reconnect = undefined;
    if (!this.#running) return;
    this.#setState("connecting");
    let token: string | undefined;
    if (this.#options.getToken) {
      try {
        token = await this.#options.getToken();
      } catch (err) {
        this.#retry({ code: 0, reason: `getToken failed: ${String(err)}`, opened: false }, true);
        return;
      }
      if (!this.#running) return;
    }
    this.#token = token;
    let Impl: WebSocketConstructor;
    let url: string;
    try {
      Impl = this.#webSocketImpl();
      url = this.#connectUrl(token);
    } catch (err) {
      this.#stop(err instanceof Error ? err.message : String(err));
      return;
    }
    const handlers: TransportHandlers = {
      onOpen: () => {},
      onText: (text) => this.#onText(transport, text),
      onTraffic: () => {
        this.#lastRx = Date.now();
      },
      onClose: (closed) => this.#onClose(transport, closed),
    };
    const transport = new Transport(Impl, url, handlers);
    this.#transport = transport;
    this.#handlers = handlers;
    this.#timers.connect = setTimeout(
      () => transport.abandon(handlers, 4000, `no welcome within ${this.#settings.connectTimeoutMs} ms`),
      this.#settings.connectTimeoutMs,
    );
  }

  #onText(transport: Transport, text: string): void {
    if (transport !== this.#transport) return;
    this.#lastRx = Date.now();
    const frame = parseFrame(text);
    if (!frame) return;
    if (this.#welcome === undefined) {
      if (frame.type === "welcome") this.#onWelcome(frame as WelcomeFrame);
      return;
    }
    this.#dispatch(frame);
  }

  #onWelcome(welcome: WelcomeFrame): void {
    clearTimeout(this.#timers.connect);
    this.#welcome = welcome;
    this.#attempt = 0;
    this.#setState("connected");
    this.emit("welcome", welcome);
    this.#startLiveness(welcome.heartbeat_ms);
    for (const room of this.#rooms.values()) room._connected();
    this.#requests.flush((text) => this.#send(text));
    this.#scheduleRefresh(this.#token === undefined ? undefined : tokenExpiry(this.#token));
  }

  #dispatch(frame: ServerFrame): void {
    switch (frame.type) {
      case "ack":
      case "pong":
        this.#requests.settle(frame);
        return;
      case "error":
        if (!this.#requests.settle(frame) && frame.id === undefined) this.emit("error", frame);
        return;
      case "message":
        this.#rooms.get(frame.room)?._message(frame);
        return;
      case "gap":
        this.#rooms.get(frame.room)?._gap(frame);
        return;
      case "joined":
      case "left":
        this.#rooms.get(frame.room)?._presence(frame);
        return;
      case "room_closed":
        this.#rooms.get(frame.room)?._closed(frame.reason);
        return;
      case "direct":
      case "broadcast":
      case "notification":
        this.emit(frame.type, frame as never);
        return;
      default:
        return; // A frame type of a later protocol version.
    }
  }

  #startLiveness(heartbeatMs: number): void {
    const interval = heartbeatMs > 0 ? heartbeatMs : 25_000;
    const pingAfter = interval / 2;
    const deadAfter = interval + this.#settings.heartbeatMarginMs;
    const tick = Math.min(1000, Math.max(50, interval / 4));
    this.#lastRx = Date.now();
    this.#lastPing = 0;
    this.#timers.liveness = setInterval(() => {
      const now = Date.now();
      const idle = now - this.#lastRx;
      if (idle >= deadAfter) {
        this.#abandon(`no traffic from the server for ${idle} ms (heartbeat ${interval} ms)`);
      } else if (idle >= pingAfter && now - this.#lastPing >= pingAfter) {
        this.#lastPing = now;
        this.#send(JSON.stringify({ type: "ping" }));
      }
    }, tick);
  }

  /** Drop the current connection as dead and reconnect. */
  #abandon(reason: string): void {
    const transport = this.#transport;
    if (transport && this.#handlers) transport.abandon(this.#handlers, 1006, reason);
  }

  #scheduleRefresh(exp: number | undefined): void {
    clearTimeout(this.#timers.refresh);
    if (!this.#options.getToken || exp === undefined) return;
    const left = exp * 1000 - Date.now();
    const lead = Math.min(this.#settings.refreshBeforeExpiryMs, left / 2);
    this.#timers.refresh = setTimeout(() => void this.#refresh(), Math.max(0, left - lead));
  }

  async #refresh(): Promise<void> {
    const transport = this.#transport;
    const getToken = this.#options.getToken;
    if (!transport || !this.#welcome || !getToken) return;
    if (!speaksAtLeast(this.#welcome.protocol, 1, 1)) {
      // A v1 server has no `refresh`: reconnect, which asks for a new token.
      this.#restartNow = true;
      this.#abandon("reconnecting to renew the token (the server has no refresh)");
      return;
    }
    try {
      const token = await getToken();
      if (transport !== this.#transport) return;
      const ack = (await this.#requests.create({ type: "refresh", token }, true, (t) => this.#send(t), true)) as {
        exp?: number;
      };
      this.#token = token;
      const exp = typeof ack.exp === "number" ? ack.exp : tokenExpiry(token);
      if (exp !== undefined) this.emit("refreshed", { exp });
      this.#scheduleRefresh(exp);
    } catch (err) {
      if (transport !== this.#transport) return;
      // The old token stays valid until its exp; try again, and at worst the
      // server closes with 1008 `token expired` and we reconnect with a new one.
      this.#timers.refresh = setTimeout(() => void this.#refresh(), REFRESH_RETRY_MS);
      if (err instanceof ShardcastError && err.code !== CLIENT_CODES.timeout) {
        this.emit("error", { type: "error", code: err.code, message: `token refresh refused: ${err.message}` });
      }
    }
  }

  #clearConnectionTimers(): void {
    clearTimeout(this.#timers.connect);
    clearTimeout(this.#timers.refresh);
    clearInterval(this.#timers.liveness);
    this.#timers.connect = this.#timers.refresh = this.#timers.liveness = undefined;
  }

  #onClose(transport: Transport, closed: Closed): void {
    if (transport !== this.#transport) return;
    this.#transport = undefined;
    this.#handlers = undefined;
    this.#welcome = undefined;
    this.#clearConnectionTimers();
    const why = closed.reason || `close code ${closed.code}`;
    this.#requests.disconnected(why);
    for (const room of this.#rooms.values()) room._disconnected();
    if (!this.#running) return;
    this.#retry(closed, transport.refusalsVisible);
  }

  #retry(closed: Closed, refusalsVisible: boolean): void {
    if (this.#restartNow) {
      this.#restartNow = false;
      this.#setState("disconnected", { reason: closed.reason, delayMs: 0 });
      this.#timers.reconnect = setTimeout(() => void this.#open(), 0);
      return;
    }
    const decision = afterClose(closed, {
      attempt: this.#attempt,
      minDelayMs: this.#settings.minReconnectDelayMs,
      maxDelayMs: this.#settings.maxReconnectDelayMs,
      unknownFailureDelayMs: this.#settings.unknownFailureDelayMs,
      hasTokenSource: this.#options.getToken !== undefined,
      refusalsVisible,
    });
    if (!decision.reconnect) {
      this.#stop(decision.reason, closed.opened ? closed.code : undefined);
      return;
    }
    this.#attempt += 1;
    const extra: Omit<StateEvent, "state"> = { reason: decision.reason, delayMs: decision.delayMs };
    if (closed.opened) extra.code = closed.code;
    this.#setState("disconnected", extra);
    this.#timers.reconnect = setTimeout(() => void this.#open(), decision.delayMs);
  }

  #stop(reason: string, code?: number): void {
    this.#running = false;
    clearTimeout(this.#timers.reconnect);
    this.#timers.reconnect = undefined;
    this.#clearConnectionTimers();
    const transport = this.#transport;
    this.#transport = undefined;
    this.#handlers = undefined;
    this.#welcome = undefined;
    transport?.close(1000);
    this.#requests.closeAll(reason);
    for (const room of this.#rooms.values()) room._shutdown(reason);
    const extra: Omit<StateEvent, "state"> = { reason };
    if (code !== undefined) extra.code = code;
    this.#setState("closed", extra);
  }
}
