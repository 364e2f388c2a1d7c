// shardcast-client 0.1.0 (source-hash 9102e38ccedd928c). Built from clients/js/src by `npm run build`: do not edit.

// src/backoff.ts
var DEFAULT_MIN_RECONNECT_DELAY_MS = 500;
var DEFAULT_MAX_RECONNECT_DELAY_MS = 2e4;
function backoffDelay(attempt, minMs, maxMs, random = Math.random) {
  const window = Math.min(maxMs, minMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * Math.max(0, window));
}

// src/emitter.ts
var Emitter = class {
  #listeners = /* @__PURE__ */ new Map();
  /** Call `listener` on every `event`. Returns a function that removes it. */
  on(event, listener) {
    let set = this.#listeners.get(event);
    if (!set) {
      set = /* @__PURE__ */ new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener);
    return () => this.off(event, listener);
  }
  /** Remove a listener added with {@link on}. */
  off(event, listener) {
    this.#listeners.get(event)?.delete(listener);
  }
  /** Call the listeners of `event`, in the order they were added. */
  emit(event, payload) {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(payload);
      } catch (err) {
        reportLater(err);
      }
    }
  }
};
function reportLater(err) {
  setTimeout(() => {
    throw err;
  }, 0);
}

// src/errors.ts
var CLIENT_CODES = {
  /** No reply within `requestTimeoutMs`. The operation may still have taken effect. */
  timeout: "timeout",
  /** The connection dropped while the request was in flight: it may or may not have taken effect. */
  disconnected: "disconnected",
  /** `client.close()` was called, or the client stopped for good. */
  closed: "closed",
  /** `maxPendingRequests` requests are already waiting for a reply. */
  queueFull: "queue_full"
};
var ShardcastError = class extends Error {
  /** The stable error code (see the module docs). */
  code;
  constructor(code, message) {
    super(message);
    this.name = "ShardcastError";
    this.code = code;
  }
};

// src/frames.ts
function parseFrame(text) {
  let value;
  try {
    value = JSON.parse(text);
  } catch {
    return void 0;
  }
  if (value && typeof value === "object" && typeof value.type === "string") {
    return value;
  }
  return void 0;
}
function speaksAtLeast(protocol, major, minor) {
  const [a, b] = (protocol ?? "1").split(".").map((n) => Number.parseInt(n, 10));
  const ma = Number.isFinite(a) ? a : 1;
  const mi = Number.isFinite(b) ? b : 0;
  return ma > major || ma === major && mi >= minor;
}

// src/policy.ts
var TOKEN_EXPIRED_REASON = "token expired";
function afterClose(closed, ctx) {
  const backoff = (attempt) => backoffDelay(attempt, ctx.minDelayMs, ctx.maxDelayMs, ctx.random);
  const refusal = closed.refusal;
  if (refusal) {
    const what = `refused: ${refusal.status}${refusal.code ? ` ${refusal.code}` : ""}${refusal.message ? `: ${refusal.message}` : ""}`;
    if (refusal.status === 503) {
      const wait = refusal.retryAfterMs ?? ctx.unknownFailureDelayMs;
      return { reconnect: true, delayMs: wait + backoff(ctx.attempt), reason: `${what} (Retry-After ${wait} ms)` };
    }
    if (refusal.status === 429 || refusal.status >= 500) {
      return { reconnect: true, delayMs: backoff(ctx.attempt), reason: what };
    }
    if (refusal.status >= 400) return { reconnect: false, reason: what };
    return { reconnect: true, delayMs: backoff(ctx.attempt), reason: what };
  }
  if (!closed.opened) {
    const reason = `could not connect (${closed.code}${closed.reason ? ` ${closed.reason}` : ""})`;
    if (ctx.refusalsVisible) return { reconnect: true, delayMs: backoff(ctx.attempt), reason };
    return { reconnect: true, delayMs: ctx.unknownFailureDelayMs + backoff(ctx.attempt), reason };
  }
  const closedBy = `closed ${closed.code}${closed.reason ? ` (${closed.reason})` : ""}`;
  if (closed.code === 1008) {
    if (closed.reason === TOKEN_EXPIRED_REASON && ctx.hasTokenSource) {
      return { reconnect: true, delayMs: backoff(0), reason: closedBy };
    }
    return { reconnect: false, reason: closedBy };
  }
  if (closed.code === 1001) return { reconnect: true, delayMs: backoff(0), reason: closedBy };
  return { reconnect: true, delayMs: backoff(ctx.attempt), reason: closedBy };
}

// src/requests.ts
var DEFAULT_REQUEST_TIMEOUT_MS = 1e4;
var DEFAULT_MAX_PENDING_REQUESTS = 1e3;
var Requests = class {
  #nextId = 1;
  #pending = /* @__PURE__ */ new Map();
  /** Pending requests that are not internal (the ones `maxPending` bounds). */
  #appCount = 0;
  #timeoutMs;
  #maxPending;
  constructor(timeoutMs, maxPending) {
    this.#timeoutMs = timeoutMs;
    this.#maxPending = maxPending;
  }
  /**
   * A new request for `frame`. `send` is called with the wire text now if
   * `canSend`, else later by {@link flush}.
   */
  create(frame, canSend, send, internal = false) {
    if (!internal && this.#appCount >= this.#maxPending) {
      return Promise.reject(
        new ShardcastError(CLIENT_CODES.queueFull, `${this.#maxPending} requests are already waiting for a reply`)
      );
    }
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#remove(pending);
        reject(new ShardcastError(CLIENT_CODES.timeout, `no reply to ${frame.type} within ${this.#timeoutMs} ms`));
      }, this.#timeoutMs);
      const pending = { id, frame, sent: false, internal, resolve, reject, timer };
      this.#pending.set(id, pending);
      if (!internal) this.#appCount += 1;
      if (canSend) this.#send(pending, send);
    });
  }
  /** Send every queued request, oldest first. */
  flush(send) {
    for (const pending of this.#pending.values()) {
      if (!pending.sent) this.#send(pending, send);
    }
  }
  /** Settle the request a reply names; false if no request waits for it (late or unknown). */
  settle(frame) {
    if (frame.id === void 0) return false;
    const pending = this.#pending.get(frame.id);
    if (!pending) return false;
    this.#remove(pending);
    if (frame.type === "error") pending.reject(new ShardcastError(frame.code, frame.message));
    else pending.resolve(frame);
    return true;
  }
  /** The connection dropped: reject every request that was sent on it. Queued ones wait. */
  disconnected(reason) {
    for (const pending of [...this.#pending.values()]) {
      if (pending.sent) this.#fail(pending, CLIENT_CODES.disconnected, `disconnected before the reply (${reason})`);
    }
  }
  /** Reject every request. */
  closeAll(reason) {
    for (const pending of [...this.#pending.values()]) this.#fail(pending, CLIENT_CODES.closed, reason);
  }
  #remove(pending) {
    if (this.#pending.delete(pending.id) && !pending.internal) this.#appCount -= 1;
    clearTimeout(pending.timer);
  }
  #send(pending, send) {
    pending.sent = true;
    send(JSON.stringify({ ...pending.frame, id: pending.id }));
  }
  #fail(pending, code, message) {
    this.#remove(pending);
    pending.reject(new ShardcastError(code, message));
  }
};

// src/room.ts
var DEFAULT_MAX_BUFFERED_MESSAGES = 1e3;
var Room = class extends Emitter {
  name;
  #host;
  /** The app wants to be in the room (join() called, no leave, no refusal). */
  #desired = false;
  #options = {};
  /** A join of this room is in flight on the current connection. */
  #joining = false;
  /** The current connection is in the room. */
  #joined = false;
  /** Last seq delivered (or skipped by a reported gap); undefined before the first ack. */
  #lastSeq;
  #epoch;
  #buffer = [];
  #resyncAfterAck = false;
  #waiter;
  #last;
  /** @internal Made by `client.room(name)`. */
  constructor(name, host) {
    super();
    this.name = name;
    this.#host = host;
  }
  /** "idle" (not joined), "joining" or "joined". */
  get state() {
    if (!this.#desired) return "idle";
    return this.#joined ? "joined" : "joining";
  }
  /** The last seq delivered, undefined before the first join. */
  get lastSeq() {
    return this.#lastSeq;
  }
  /** The room's incarnation, from the last join ack (v1.1 servers). */
  get epoch() {
    return this.#epoch;
  }
  /**
   * Join the room, and rejoin it after every reconnect until {@link leave}.
   * Resolves on the server's ack; rejects with its error code, or `timeout`.
   */
  join(options = {}) {
    if (this.#waiter) return this.#waiter.promise;
    if (this.#desired && this.#joined && this.#last) return Promise.resolve(this.#last);
    this.#desired = true;
    this.#options = { ...options };
    const waiter = this.#newWaiter();
    if (this.#host.connected && !this.#joining) this.#sendJoin("first");
    return waiter.promise;
  }
  /** Publish `data`; resolves with the message's seq. */
  async publish(data, options = {}) {
    const frame = { type: "publish", room: this.name, data };
    if (options.excludeSelf) frame.exclude_self = true;
    const ack = await this.#host.request(frame);
    return ack.seq;
  }
  /** The presence list (at most the server's `max_presence_list` entries) and the exact total. */
  async members() {
    const ack = await this.#host.request({ type: "members", room: this.name });
    return { members: ack.members, total: ack.total };
  }
  /** Leave the room; it is not rejoined after reconnects. */
  async leave() {
    const wasIn = this.#joined || this.#joining;
    this.#reset();
    this.#waiter?.reject(new ShardcastError(CLIENT_CODES.closed, `left ${this.name} before the join completed`));
    this.#clearWaiter();
    if (!wasIn || !this.#host.connected) return;
    try {
      await this.#host.request({ type: "leave", room: this.name });
    } catch (err) {
      const code = err.code;
      if (code !== "not_member" && code !== "room_not_found" && code !== CLIENT_CODES.disconnected) throw err;
    }
  }
  /** @internal The client is connected (welcome read): rejoin if wanted. */
  _connected() {
    if (this.#desired && !this.#joining) this.#sendJoin(this.#lastSeq === void 0 ? "first" : "rejoin");
  }
  /** @internal The connection dropped. */
  _disconnected() {
    this.#joining = false;
    this.#joined = false;
    this.#buffer = [];
    this.#resyncAfterAck = false;
  }
  /** @internal A `message` frame of this room. */
  _message(m) {
    if (!this.#desired) return;
    if (this.#joining) {
      if (this.#buffer.length < this.#host.maxBufferedMessages) this.#buffer.push(m);
      else {
        this.#buffer = [];
        this.#resyncAfterAck = true;
      }
      return;
    }
    if (this.#joined) this.#accept(m);
  }
  /** @internal A `gap` frame: try history first. */
  _gap(g) {
    if (!this.#desired || this.#lastSeq === void 0 || g.to <= this.#lastSeq) return;
    if (this.#joining) this.#resyncAfterAck = true;
    else if (this.#joined) this.#sendJoin("resync");
  }
  /** @internal `joined` / `left` presence events. */
  _presence(p) {
    if (this.#desired) this.emit(p.type, p);
  }
  /** @internal The room was deleted. */
  _closed(reason) {
    if (!this.#desired) return;
    this.#reset();
    this.#waiter?.reject(new ShardcastError("room_closed", `${this.name} was closed: ${reason}`));
    this.#clearWaiter();
    this.emit("closed", { room: this.name, reason });
  }
  /** @internal The client closed for good: the room is left (a later `connect()` does not rejoin it). */
  _shutdown(reason) {
    this.#waiter?.reject(new ShardcastError(CLIENT_CODES.closed, reason));
    this.#clearWaiter();
    this.#reset();
  }
  #sendJoin(kind) {
    this.#joining = true;
    this.#buffer = [];
    this.#resyncAfterAck = false;
    const frame = { type: "join", room: this.name };
    if (this.#lastSeq !== void 0) {
      frame.since = this.#lastSeq;
      if (this.#epoch !== void 0 && this.#host.speaksEpochs) frame.epoch = this.#epoch;
    }
    if (this.#options.create === false) frame.create = false;
    this.#host.sendJoin(frame).then(
      (ack) => this.#onAck(ack, kind),
      (err) => this.#onJoinError(err, kind)
    );
  }
  #onJoinError(err, kind) {
    if (err.code === CLIENT_CODES.disconnected || err.code === CLIENT_CODES.closed) return;
    this.#joining = false;
    if (err.code === CLIENT_CODES.timeout) {
      if (this.#desired) this.#host.abandon(`join of ${this.name} got no reply`);
      return;
    }
    const wasDesired = this.#desired;
    this.#reset();
    if (this.#waiter) {
      this.#waiter.reject(err);
      this.#clearWaiter();
    } else if (wasDesired && kind !== "first") {
      this.emit("closed", { room: this.name, reason: err.message, code: err.code });
    }
  }
  #onAck(ack, kind) {
    this.#joining = false;
    if (!this.#desired) {
      this.#host.request({ type: "leave", room: this.name }).catch(() => {
      });
      return;
    }
    this.#joined = true;
    const history = [...ack.history ?? []].sort((a, b) => a.seq - b.seq);
    const previous = this.#lastSeq;
    if (previous === void 0) {
      this.#epoch = ack.epoch;
      if (this.#options.history) for (const m of history) this.emit("message", m);
      this.#lastSeq = ack.seq;
    } else {
      const sameIncarnation = this.#epoch !== void 0 && ack.epoch !== void 0 ? ack.epoch === this.#epoch : ack.seq >= previous;
      if (sameIncarnation) this.#resume(ack, history, previous, kind);
      else {
        this.#epoch = ack.epoch;
        this.#lastSeq = ack.seq;
        this.emit("resumed", { room: this.name, recovered: false, epochChanged: true });
        if (this.#options.history) for (const m of history) this.emit("message", m);
      }
    }
    const result = { room: this.name, seq: ack.seq, members: ack.members };
    if (ack.epoch !== void 0) result.epoch = ack.epoch;
    this.#last = result;
    if (this.#waiter) {
      this.#waiter.resolve(result);
      this.#clearWaiter();
    }
    this.#drainBuffer();
  }
  /** A rejoin or resync of the same incarnation: deliver what was missed, report what is lost. */
  #resume(ack, history, previous, kind) {
    const missed = history.filter((m) => m.seq > previous);
    const firstHeld = missed[0]?.seq ?? ack.seq + 1;
    const recovered = ack.recovered === true || firstHeld === previous + 1 || ack.seq === previous;
    if (!recovered) {
      this.emit("gap", { room: this.name, from: previous + 1, to: firstHeld - 1 });
      this.#lastSeq = firstHeld - 1;
    }
    if (kind === "rejoin") this.emit("resumed", { room: this.name, recovered, epochChanged: false });
    for (const m of missed) this.#accept(m);
    if ((this.#lastSeq ?? 0) < ack.seq) {
      this.emit("gap", { room: this.name, from: (this.#lastSeq ?? 0) + 1, to: ack.seq });
      this.#lastSeq = ack.seq;
    }
  }
  /** Deliver the live messages held while the join was in flight. */
  #drainBuffer() {
    const held = this.#buffer.sort((a, b) => a.seq - b.seq);
    this.#buffer = [];
    for (const m of held) {
      if (this.#joining) {
        this.#buffer.push(m);
        continue;
      }
      this.#accept(m);
    }
    if (this.#resyncAfterAck && !this.#joining) this.#sendJoin("resync");
  }
  /** Deliver one message if it is the next seq; resync on a hole; drop duplicates. */
  #accept(m) {
    const last = this.#lastSeq;
    if (last === void 0 || m.seq <= last) return;
    if (m.seq === last + 1) {
      this.#lastSeq = m.seq;
      this.emit("message", m);
      return;
    }
    this.#sendJoin("resync");
    this.#buffer.push(m);
  }
  #reset() {
    this.#desired = false;
    this.#joining = false;
    this.#joined = false;
    this.#lastSeq = void 0;
    this.#epoch = void 0;
    this.#buffer = [];
    this.#resyncAfterAck = false;
    this.#last = void 0;
  }
  #newWaiter() {
    let resolve;
    let reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const timer = setTimeout(() => {
      if (this.#waiter !== waiter) return;
      this.#clearWaiter();
      const wasIn = this.#joined || this.#joining;
      this.#reset();
      if (wasIn && this.#host.connected) this.#host.request({ type: "leave", room: this.name }).catch(() => {
      });
      reject(new ShardcastError(CLIENT_CODES.timeout, `join of ${this.name} did not complete within ${this.#host.requestTimeoutMs} ms`));
    }, this.#host.requestTimeoutMs);
    const waiter = { resolve, reject, timer, promise };
    this.#waiter = waiter;
    return waiter;
  }
  #clearWaiter() {
    if (this.#waiter) clearTimeout(this.#waiter.timer);
    this.#waiter = void 0;
  }
};

// src/token.ts
function tokenExpiry(token) {
  const part = token.split(".")[1];
  if (!part) return void 0;
  try {
    const base64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const padded = base64 + "=".repeat((4 - base64.length % 4) % 4);
    const claims = JSON.parse(atob(padded));
    if (claims && typeof claims === "object" && "exp" in claims) {
      const exp = claims.exp;
      return typeof exp === "number" && Number.isFinite(exp) ? exp : void 0;
    }
  } catch {
  }
  return void 0;
}

// src/transport.ts
var MAX_REFUSAL_BODY_BYTES = 4096;
var REFUSAL_READ_TIMEOUT_MS = 2e3;
var Transport = class {
  #socket;
  #opened = false;
  #done = false;
  #refusal;
  /** True if refused upgrades are visible (the `ws` package), see the module docs. */
  refusalsVisible;
  constructor(Impl, url, handlers) {
    const socket = new Impl(url);
    this.#socket = socket;
    socket.onopen = () => {
      if (this.#done) return;
      this.#opened = true;
      handlers.onOpen();
    };
    socket.onmessage = (ev) => {
      if (this.#done) return;
      if (typeof ev.data === "string") handlers.onText(ev.data);
      else handlers.onTraffic();
    };
    socket.onerror = () => {
    };
    socket.onclose = (ev) => this.#finish(handlers, ev.code, ev.reason);
    const nodeWs = socket;
    this.refusalsVisible = typeof nodeWs.on === "function" && typeof nodeWs.terminate === "function";
    if (this.refusalsVisible) {
      const emitter = nodeWs;
      emitter.on("ping", () => {
        if (!this.#done) handlers.onTraffic();
      });
      emitter.on("unexpected-response", (_req, res) => this.#readRefusal(emitter, res));
    }
  }
  /** True once the WebSocket is open (and not closed). */
  get open() {
    return this.#opened && !this.#done;
  }
  send(text) {
    if (this.open) this.#socket.send(text);
  }
  /** Close with a code the client may send (1000, or 3000-4999). */
  close(code = 1e3, reason = "") {
    try {
      this.#socket.close(code, reason);
    } catch {
    }
  }
  /**
   * End the attempt now and report `code`/`reason`, without waiting for the
   * server's close frame (a dead connection never sends one).
   */
  abandon(handlers, code, reason) {
    this.#finish(handlers, code, reason);
    const nodeWs = this.#socket;
    if (typeof nodeWs.terminate === "function") {
      nodeWs.terminate();
    } else {
      this.close(4e3, reason.slice(0, 100));
    }
  }
  #finish(handlers, code, reason) {
    if (this.#done) return;
    this.#done = true;
    const closed = { code, reason, opened: this.#opened };
    if (this.#refusal) closed.refusal = this.#refusal;
    handlers.onClose(closed);
  }
  /** `ws` only: read the refused upgrade's status, headers and body, then end the attempt. */
  #readRefusal(socket, res) {
    const refusal = { status: res.statusCode ?? 0 };
    const retryAfter = parseRetryAfter(res.headers["retry-after"]);
    if (retryAfter !== void 0) refusal.retryAfterMs = retryAfter;
    this.#refusal = refusal;
    const chunks = [];
    let size = 0;
    const end = () => {
      clearTimeout(timer);
      Object.assign(refusal, parseErrorBody(chunks));
      res.destroy();
      socket.terminate();
    };
    const timer = setTimeout(end, REFUSAL_READ_TIMEOUT_MS);
    res.on("data", (chunk) => {
      if (size < MAX_REFUSAL_BODY_BYTES) {
        chunks.push(chunk);
        size += chunk.length;
      }
    });
    res.on("end", end);
    res.on("error", end);
  }
};
function parseRetryAfter(value) {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === void 0 || text.trim() === "") return void 0;
  const secs = Number(text);
  if (Number.isFinite(secs) && secs >= 0) return Math.round(secs * 1e3);
  const date = Date.parse(text);
  return Number.isNaN(date) ? void 0 : Math.max(0, date - Date.now());
}
function parseErrorBody(chunks) {
  try {
    const text = new TextDecoder().decode(concat(chunks));
    const body = JSON.parse(text);
    const out = {};
    if (typeof body.error?.code === "string") out.code = body.error.code;
    if (typeof body.error?.message === "string") out.message = body.error.message;
    return out;
  } catch {
    return {};
  }
}
function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

// src/client.ts
var DEFAULT_CONNECT_TIMEOUT_MS = 1e4;
var DEFAULT_HEARTBEAT_MARGIN_MS = 1e4;
var DEFAULT_REFRESH_BEFORE_EXPIRY_MS = 3e4;
var DEFAULT_UNKNOWN_FAILURE_DELAY_MS = 1e3;
var REFRESH_RETRY_MS = 5e3;
var Client = class extends Emitter {
  url;
  #options;
  #settings;
  #requests;
  #rooms = /* @__PURE__ */ new Map();
  #host;
  #state = "disconnected";
  #running = false;
  #attempt = 0;
  #transport;
  #handlers;
  #welcome;
  #token;
  #lastRx = 0;
  #lastPing = 0;
  #restartNow = false;
  #timers = {};
  constructor(url, options = {}) {
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
      unknownFailureDelayMs: options.unknownFailureDelayMs ?? DEFAULT_UNKNOWN_FAILURE_DELAY_MS
    };
    this.#requests = new Requests(this.#settings.requestTimeoutMs, this.#settings.maxPendingRequests);
    const client = this;
    this.#host = {
      get connected() {
        return client.#welcome !== void 0;
      },
      get speaksEpochs() {
        return speaksAtLeast(client.#welcome?.protocol, 1, 1);
      },
      maxBufferedMessages: this.#settings.maxBufferedMessages,
      requestTimeoutMs: this.#settings.requestTimeoutMs,
      request: (frame) => this.#request(frame),
      sendJoin: (frame) => this.#requests.create(frame, true, (text) => this.#send(text), true),
      abandon: (reason) => this.#abandon(reason)
    };
  }
  /** The current state. */
  get state() {
    return this.#state;
  }
  /** The current connection's `welcome` (conn, user, node, protocol, ...), if connected. */
  get welcome() {
    return this.#welcome;
  }
  /** Start connecting (and reconnecting until {@link close}). Idempotent. */
  connect() {
    if (this.#running) return;
    this.#running = true;
    this.#attempt = 0;
    void this.#open();
  }
  /** Close for good: rejects every pending request with `closed`; rooms are left. */
  close() {
    if (!this.#running && this.#state === "closed") return;
    this.#stop("closed by the application");
  }
  /** The handle of room `name` (one per name; joining is explicit: `room.join()`). */
  room(name) {
    let room = this.#rooms.get(name);
    if (!room) {
      room = new Room(name, this.#host);
      this.#rooms.set(name, room);
    }
    return room;
  }
  /** A direct message to every connection of `user`. */
  async send(user, data) {
    await this.#request({ type: "send", to: user, data });
  }
  /** A `broadcast` to every connection (needs the `broadcast` right). */
  async broadcast(data) {
    await this.#request({ type: "broadcast", data });
  }
  /** An application-level ping; resolves with the round trip in ms. */
  async ping() {
    const started = Date.now();
    await this.#request({ type: "ping" });
    return Date.now() - started;
  }
  #request(frame) {
    if (!this.#running) {
      return Promise.reject(new ShardcastError(CLIENT_CODES.closed, "the client is not running: call connect()"));
    }
    return this.#requests.create(frame, this.#welcome !== void 0, (text) => this.#send(text));
  }
  #send(text) {
    this.#transport?.send(text);
  }
  #setState(state, extra = {}) {
    this.#state = state;
    this.emit("state", { state, ...extra });
  }
  #webSocketImpl() {
    const impl = this.#options.WebSocket ?? globalThis.WebSocket;
    if (typeof impl !== "function") {
      throw new ShardcastError(
        "no_websocket",
        'no WebSocket implementation: pass one as the `WebSocket` option (Node < 22: import WebSocket from "ws")'
      );
    }
    return impl;
  }
  #connectUrl(token) {
    const url = new URL(this.url);
    if (url.protocol === "http:") url.protocol = "ws:";
    if (url.protocol === "https:") url.protocol = "wss:";
    if (this.#options.user !== void 0) url.searchParams.set("user", this.#options.user);
    if (this.#options.name !== void 0) url.searchParams.set("name", this.#options.name);
    if (token !== void 0) url.searchParams.set("token", token);
    return url.toString();
  }
  async #open() {
    this.#timers.reconnect = void 0;
    if (!this.#running) return;
    this.#setState("connecting");
    let token;
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
    let Impl;
    let url;
    try {
      Impl = this.#webSocketImpl();
      url = this.#connectUrl(token);
    } catch (err) {
      this.#stop(err instanceof Error ? err.message : String(err));
      return;
    }
    const handlers = {
      onOpen: () => {
      },
      onText: (text) => this.#onText(transport, text),
      onTraffic: () => {
        this.#lastRx = Date.now();
      },
      onClose: (closed) => this.#onClose(transport, closed)
    };
    const transport = new Transport(Impl, url, handlers);
    this.#transport = transport;
    this.#handlers = handlers;
    this.#timers.connect = setTimeout(
      () => transport.abandon(handlers, 4e3, `no welcome within ${this.#settings.connectTimeoutMs} ms`),
      this.#settings.connectTimeoutMs
    );
  }
  #onText(transport, text) {
    if (transport !== this.#transport) return;
    this.#lastRx = Date.now();
    const frame = parseFrame(text);
    if (!frame) return;
    if (this.#welcome === void 0) {
      if (frame.type === "welcome") this.#onWelcome(frame);
      return;
    }
    this.#dispatch(frame);
  }
  #onWelcome(welcome) {
    clearTimeout(this.#timers.connect);
    this.#welcome = welcome;
    this.#attempt = 0;
    this.#setState("connected");
    this.emit("welcome", welcome);
    this.#startLiveness(welcome.heartbeat_ms);
    for (const room of this.#rooms.values()) room._connected();
    this.#requests.flush((text) => this.#send(text));
    this.#scheduleRefresh(this.#token === void 0 ? void 0 : tokenExpiry(this.#token));
  }
  #dispatch(frame) {
    switch (frame.type) {
      case "ack":
      case "pong":
        this.#requests.settle(frame);
        return;
      case "error":
        if (!this.#requests.settle(frame) && frame.id === void 0) this.emit("error", frame);
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
        this.emit(frame.type, frame);
        return;
      default:
        return;
    }
  }
  #startLiveness(heartbeatMs) {
    const interval = heartbeatMs > 0 ? heartbeatMs : 25e3;
    const pingAfter = interval / 2;
    const deadAfter = interval + this.#settings.heartbeatMarginMs;
    const tick = Math.min(1e3, Math.max(50, interval / 4));
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
  #abandon(reason) {
    const transport = this.#transport;
    if (transport && this.#handlers) transport.abandon(this.#handlers, 1006, reason);
  }
  #scheduleRefresh(exp) {
    clearTimeout(this.#timers.refresh);
    if (!this.#options.getToken || exp === void 0) return;
    const left = exp * 1e3 - Date.now();
    const lead = Math.min(this.#settings.refreshBeforeExpiryMs, left / 2);
    this.#timers.refresh = setTimeout(() => void this.#refresh(), Math.max(0, left - lead));
  }
  async #refresh() {
    const transport = this.#transport;
    const getToken = this.#options.getToken;
    if (!transport || !this.#welcome || !getToken) return;
    if (!speaksAtLeast(this.#welcome.protocol, 1, 1)) {
      this.#restartNow = true;
      this.#abandon("reconnecting to renew the token (the server has no refresh)");
      return;
    }
    try {
      const token = await getToken();
      if (transport !== this.#transport) return;
      const ack = await this.#requests.create({ type: "refresh", token }, true, (t) => this.#send(t), true);
      this.#token = token;
      const exp = typeof ack.exp === "number" ? ack.exp : tokenExpiry(token);
      if (exp !== void 0) this.emit("refreshed", { exp });
      this.#scheduleRefresh(exp);
    } catch (err) {
      if (transport !== this.#transport) return;
      this.#timers.refresh = setTimeout(() => void this.#refresh(), REFRESH_RETRY_MS);
      if (err instanceof ShardcastError && err.code !== CLIENT_CODES.timeout) {
        this.emit("error", { type: "error", code: err.code, message: `token refresh refused: ${err.message}` });
      }
    }
  }
  #clearConnectionTimers() {
    clearTimeout(this.#timers.connect);
    clearTimeout(this.#timers.refresh);
    clearInterval(this.#timers.liveness);
    this.#timers.connect = this.#timers.refresh = this.#timers.liveness = void 0;
  }
  #onClose(transport, closed) {
    if (transport !== this.#transport) return;
    this.#transport = void 0;
    this.#handlers = void 0;
    this.#welcome = void 0;
    this.#clearConnectionTimers();
    const why = closed.reason || `close code ${closed.code}`;
    this.#requests.disconnected(why);
    for (const room of this.#rooms.values()) room._disconnected();
    if (!this.#running) return;
    this.#retry(closed, transport.refusalsVisible);
  }
  #retry(closed, refusalsVisible) {
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
      hasTokenSource: this.#options.getToken !== void 0,
      refusalsVisible
    });
    if (!decision.reconnect) {
      this.#stop(decision.reason, closed.opened ? closed.code : void 0);
      return;
    }
    this.#attempt += 1;
    const extra = { reason: decision.reason, delayMs: decision.delayMs };
    if (closed.opened) extra.code = closed.code;
    this.#setState("disconnected", extra);
    this.#timers.reconnect = setTimeout(() => void this.#open(), decision.delayMs);
  }
  #stop(reason, code) {
    this.#running = false;
    clearTimeout(this.#timers.reconnect);
    this.#timers.reconnect = void 0;
    this.#clearConnectionTimers();
    const transport = this.#transport;
    this.#transport = void 0;
    this.#handlers = void 0;
    this.#welcome = void 0;
    transport?.close(1e3);
    this.#requests.closeAll(reason);
    for (const room of this.#rooms.values()) room._shutdown(reason);
    const extra = { reason };
    if (code !== void 0) extra.code = code;
    this.#setState("closed", extra);
  }
};
export {
  CLIENT_CODES,
  Client,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_HEARTBEAT_MARGIN_MS,
  DEFAULT_MAX_BUFFERED_MESSAGES,
  DEFAULT_MAX_PENDING_REQUESTS,
  DEFAULT_MAX_RECONNECT_DELAY_MS,
  DEFAULT_MIN_RECONNECT_DELAY_MS,
  DEFAULT_REFRESH_BEFORE_EXPIRY_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_UNKNOWN_FAILURE_DELAY_MS,
  Room,
  ShardcastError,
  backoffDelay
};
