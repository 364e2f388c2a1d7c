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
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
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

/** Longest refusal body read (the broker's are ~100 bytes). */
const MAX_REFUSAL_BODY_BYTES = 4096;
/** How long reading a refusal body may take before the attempt is ended anyway. */
const REFUSAL_READ_TIMEOUT_MS = 2000;

/** A `ws`-style socket: an EventEmitter with `terminate`. */
interface NodeWsLike {
  on(event: string, listener: (...args: never[]) => void): void;
  terminate(): void;
}

interface IncomingLike {
  statusCode?: number;
  headers: Record<string, string | string[] | undefined>;
  on(event: string, listener: (...args: never[]) => void): void;
  destroy(): void;
}

/** One connection attempt. */
export class Transport {
  #socket: WebSocketLike;
  #opened = false;
  #done = false;
  #refusal: Refusal | undefined;
  /** True if refused upgrades are visible (the `ws` package), see the module docs. */
  readonly refusalsVisible: boolean;

  constructor(Impl: WebSocketConstructor, url: string, handlers: TransportHandlers) {
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
      // Always followed by `close`, which carries what we report.
    };
    socket.onclose = (ev) => this.#finish(handlers, ev.code, ev.reason);
    const nodeWs = socket as unknown as Partial<NodeWsLike>;
    this.refusalsVisible = typeof nodeWs.on === "function" && typeof nodeWs.terminate === "function";
    if (this.refusalsVisible) {
      const emitter = nodeWs as NodeWsLike;
      emitter.on("ping", () => {
        if (!this.#done) handlers.onTraffic();
      });
      emitter.on("unexpected-response", (_req: never, res: IncomingLike) => this.#readRefusal(emitter, res));
    }
  }

  /** True once the WebSocket is open (and not closed). */
  get open(): boolean {
    return this.#opened && !this.#done;
  }

  send(text: string): void {
    if (this.open) this.#socket.send(text);
  }

  /** Close with a code the client may send (1000, or 3000-4999). */
  close(code = 1000, reason = ""): void {
    try {
      this.#socket.close(code, reason);
    } catch {
      // Already closing.
    }
  }

  /**
   * End the attempt now and report `code`/`reason`, without waiting for the
   * server's close frame (a dead connection never sends one).
   */
  abandon(handlers: TransportHandlers, code: number, reason: string): void {
    this.#finish(handlers, code, reason);
    const nodeWs = this.#socket as unknown as Partial<NodeWsLike>;
    if (typeof nodeWs.terminate === "function") {
      nodeWs.terminate();
    } else {
      this.close(4000, reason.slice(0, 100));
    }
  }

  #finish(handlers: TransportHandlers, code: number, reason: string): void {
    if (this.#done) return;
    this.#done = true;
    const closed: Closed = { code, reason, opened: this.#opened };
    if (this.#refusal) closed.refusal = this.#refusal;
    handlers.onClose(closed);
  }

  /** `ws` only: read the refused upgrade's status, headers and body, then end the attempt. */
  #readRefusal(socket: NodeWsLike, res: IncomingLike): void {
    const refusal: Refusal = { status: res.statusCode ?? 0 };
    const retryAfter = parseRetryAfter(res.headers["retry-after"]);
    if (retryAfter !== undefined) refusal.retryAfterMs = retryAfter;
    this.#refusal = refusal;
    const chunks: Uint8Array[] = [];
    let size = 0;
    const end = () => {
      clearTimeout(timer);
      Object.assign(refusal, parseErrorBody(chunks));
      res.destroy();
      socket.terminate();
    };
    const timer = setTimeout(end, REFUSAL_READ_TIMEOUT_MS);
    res.on("data", (chunk: Uint8Array) => {
      if (size < MAX_REFUSAL_BODY_BYTES) {
        chunks.push(chunk);
        size += chunk.length;
      }
    });
    res.on("end", end);
    res.on("error", end);
  }
}

/** `Retry-After` in seconds (the broker's form) or as an HTTP date, in ms. */
export function parseRetryAfter(value: string | string[] | undefined): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined || text.trim() === "") return undefined;
  const secs = Number(text);
  if (Number.isFinite(secs) && secs >= 0) return Math.round(secs * 1000);
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

function parseErrorBody(chunks: Uint8Array[]): { code?: string; message?: string } {
  try {
    const text = new TextDecoder().decode(concat(chunks));
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    const out: { code?: string; message?: string } = {};
    if (typeof body.error?.code === "string") out.code = body.error.code;
    if (typeof body.error?.message === "string") out.message = body.error.message;
    return out;
  } catch {
    return {};
  }
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
