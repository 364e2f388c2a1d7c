/**
 * A room handle: joins, rejoins after every reconnect, and turns the
 * server's frames into an exactly-once, in-order message stream.
 *
 * Invariants (per incarnation of the room, i.e. per `epoch`):
 * - `message` events carry strictly increasing, consecutive `seq`s: each
 *   `seq` once, none skipped silently. A skipped range is reported by one
 *   `gap` event before the next message.
 * - While a join is in flight, the room's live messages are held in a
 *   buffer of at most `maxBufferedMessages`; past that the buffer is
 *   dropped and the room resyncs from the server's history (join with
 *   `since`), so memory stays bounded and nothing is lost silently.
 * - A `gap` frame from the server, or a hole in the live stream, triggers
 *   one resync first: only what history can no longer provide becomes a
 *   `gap` event.
 * - After every rejoin that follows a reconnect, one `resumed` event comes
 *   before the messages recovered by that rejoin. `recovered: false` means
 *   the app must reload its state; `epochChanged` means the room is a new
 *   incarnation whose `seq`s start again.
 */

import { Emitter } from "./emitter.js";
import { CLIENT_CODES, ShardcastError } from "./errors.js";
import type { ClientFrame, JoinAck, Json, MessageFrame, PresenceFrame, GapFrame } from "./frames.js";
import type { Reply } from "./requests.js";

/** Default `maxBufferedMessages` (per room, while its join is in flight). */
export const DEFAULT_MAX_BUFFERED_MESSAGES = 1000;

export interface JoinOptions {
  /** Deliver the ack's recent history as `message` events before live ones (default false). */
  history?: boolean;
  /** Create the room if it is missing (default true, the server's default). */
  create?: boolean;
}

export interface JoinResult {
  room: string;
  /** The room's last seq when the join took effect. */
  seq: number;
  /** Member count, this connection included. */
  members: number;
  /** The room's incarnation (v1.1 servers). */
  epoch?: string;
}

export interface Member {
  conn: number;
  user: string;
  name: string | null;
}

export interface RoomEvents {
  message: MessageFrame;
  gap: { room: string; from: number; to: number };
  resumed: { room: string; recovered: boolean; epochChanged: boolean };
  joined: PresenceFrame;
  left: PresenceFrame;
  /** The room was deleted (`reason: "deleted"`), or a rejoin was refused (`code` says why). */
  closed: { room: string; reason: string; code?: string };
}

/** What a room needs from its client. */
export interface RoomHost {
  readonly connected: boolean;
  /** True if the server speaks protocol 1.1 (epochs). */
  readonly speaksEpochs: boolean;
  readonly maxBufferedMessages: number;
  readonly requestTimeoutMs: number;
  /** A request; queued while disconnected. */
  request(frame: ClientFrame): Promise<Reply>;
  /** Send a join now (only while connected); rejected with `disconnected` if the connection drops. */
  sendJoin(frame: ClientFrame): Promise<Reply>;
  /** The connection misbehaves (a join went unanswered): drop it and reconnect. */
  abandon(reason: string): void;
}

type JoinKind = "first" | "rejoin" | "resync";

interface Waiter {
  resolve(result: JoinResult): void;
  reject(error: ShardcastError): void;
  timer: ReturnType<typeof setTimeout>;
  promise: Promise<JoinResult>;
}

export class Room extends Emitter<RoomEvents> {
  readonly name: string;
  readonly #host: RoomHost;
  /** The app wants to be in the room (join() called, no leave, no refusal). */
  #desired = false;
  #options: JoinOptions = {};
  /** A join of this room is in flight on the current connection. */
  #joining = false;
  /** The current connection is in the room. */
  #joined = false;
  /** Last seq delivered (or skipped by a reported gap); undefined before the first ack. */
  #lastSeq: number | undefined;
  #epoch: string | undefined;
  #buffer: MessageFrame[] = [];
  #resyncAfterAck = false;
  #waiter: Waiter | undefined;
  #last: JoinResult | undefined;

  /** @internal Made by `client.room(name)`. */
  constructor(name: string, host: RoomHost) {
    super();
    this.name = name;
    this.#host = host;
  }

  /** "idle" (not joined), "joining" or "joined". */
  get state(): "idle" | "joining" | "joined" {
    if (!this.#desired) return "idle";
    return this.#joined ? "joined" : "joining";
  }

  /** The last seq delivered, undefined before the first join. */
  get lastSeq(): number | undefined {
    return this.#lastSeq;
  }

  /** The room's incarnation, from the last join ack (v1.1 servers). */
  get epoch(): string | undefined {
    return this.#epoch;
  }

  /**
   * Join the room, and rejoin it after every reconnect until {@link leave}.
   * Resolves on the server's ack; rejects with its error code, or `timeout`.
   */
  join(options: JoinOptions = {}): Promise<JoinResult> {
    if (this.#waiter) return this.#waiter.promise;
    if (this.#desired && this.#joined && this.#last) return Promise.resolve(this.#last);
    this.#desired = true;
    this.#options = { ...options };
    const waiter = this.#newWaiter();
    if (this.#host.connected && !this.#joining) this.#sendJoin("first");
    return waiter.promise;
  }

  /** Publish `data`; resolves with the message's seq. */
  async publish(data: Json, options: { excludeSelf?: boolean } = {}): Promise<number> {
    const frame: ClientFrame = { type: "publish", room: this.name, data };
    if (options.excludeSelf) frame.exclude_self = true;
    const ack = await this.#host.request(frame);
    return (ack as unknown as { seq: number }).seq;
  }

  /** The presence list (at most the server's `max_presence_list` entries) and the exact total. */
  async members(): Promise<{ members: Member[]; total: number }> {
    const ack = (await this.#host.request({ type: "members", room: this.name })) as unknown as {
      members: Member[];
      total: number;
    };
    return { members: ack.members, total: ack.total };
  }

  /** Leave the room; it is not rejoined after reconnects. */
  async leave(): Promise<void> {
    const wasIn = this.#joined || this.#joining;
    this.#reset();
    this.#waiter?.reject(new ShardcastError(CLIENT_CODES.closed, `left ${this.name} before the join completed`));
    this.#clearWaiter();
    if (!wasIn || !this.#host.connected) return;
    try {
      await this.#host.request({ type: "leave", room: this.name });
    } catch (err) {
      // Not a member (any more) is what leave wants; a dropped connection left every room.
      const code = (err as ShardcastError).code;
      if (code !== "not_member" && code !== "room_not_found" && code !== CLIENT_CODES.disconnected) throw err;
    }
  }

  /** @internal The client is connected (welcome read): rejoin if wanted. */
  _connected(): void {
    if (this.#desired && !this.#joining) this.#sendJoin(this.#lastSeq === undefined ? "first" : "rejoin");
  }

  /** @internal The connection dropped. */
  _disconnected(): void {
    this.#joining = false;
    this.#joined = false;
    this.#buffer = [];
    this.#resyncAfterAck = false;
  }

  /** @internal A `message` frame of this room. */
  _message(m: MessageFrame): void {
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
  _gap(g: GapFrame): void {
    if (!this.#desired || this.#lastSeq === undefined || g.to <= this.#lastSeq) return;
    if (this.#joining) this.#resyncAfterAck = true;
    else if (this.#joined) this.#sendJoin("resync");
  }

  /** @internal `joined` / `left` presence events. */
  _presence(p: PresenceFrame): void {
    if (this.#desired) this.emit(p.type, p);
  }

  /** @internal The room was deleted. */
  _closed(reason: string): void {
    if (!this.#desired) return;
    this.#reset();
    this.#waiter?.reject(new ShardcastError("room_closed", `${this.name} was closed: ${reason}`));
    this.#clearWaiter();
    this.emit("closed", { room: this.name, reason });
  }

  /** @internal The client closed for good: the room is left (a later `connect()` does not rejoin it). */
  _shutdown(reason: string): void {
    this.#waiter?.reject(new ShardcastError(CLIENT_CODES.closed, reason));
    this.#clearWaiter();
    this.#reset();
  }

  #sendJoin(kind: JoinKind): void {
    this.#joining = true;
    this.#buffer = [];
    this.#resyncAfterAck = false;
    const frame: ClientFrame = { type: "join", room: this.name };
    if (this.#lastSeq !== undefined) {
      frame.since = this.#lastSeq;
      if (this.#epoch !== undefined && this.#host.speaksEpochs) frame.epoch = this.#epoch;
    }
    if (this.#options.create === false) frame.create = false;
    this.#host.sendJoin(frame).then(
      (ack) => this.#onAck(ack as JoinAck, kind),
      (err: ShardcastError) => this.#onJoinError(err, kind),
    );
  }

  #onJoinError(err: ShardcastError, kind: JoinKind): void {
    if (err.code === CLIENT_CODES.disconnected || err.code === CLIENT_CODES.closed) return; // rejoined on reconnect
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

  #onAck(ack: JoinAck, kind: JoinKind): void {
    this.#joining = false;
    if (!this.#desired) {
      // Left (or gave up) while the join was in flight.
      this.#host.request({ type: "leave", room: this.name }).catch(() => {});
      return;
    }
    this.#joined = true;
    const history = [...(ack.history ?? [])].sort((a, b) => a.seq - b.seq);
    const previous = this.#lastSeq;
    if (previous === undefined) {
      this.#epoch = ack.epoch;
      if (this.#options.history) for (const m of history) this.emit("message", m);
      this.#lastSeq = ack.seq;
    } else {
      const sameIncarnation =
        this.#epoch !== undefined && ack.epoch !== undefined ? ack.epoch === this.#epoch : ack.seq >= previous;
      if (sameIncarnation) this.#resume(ack, history, previous, kind);
      else {
        this.#epoch = ack.epoch;
        this.#lastSeq = ack.seq;
        this.emit("resumed", { room: this.name, recovered: false, epochChanged: true });
        if (this.#options.history) for (const m of history) this.emit("message", m);
      }
    }
    const result: JoinResult = { room: this.name, seq: ack.seq, members: ack.members };
    if (ack.epoch !== undefined) result.epoch = ack.epoch;
    this.#last = result;
    if (this.#waiter) {
      this.#waiter.resolve(result);
      this.#clearWaiter();
    }
    this.#drainBuffer();
  }

  /** A rejoin or resync of the same incarnation: deliver what was missed, report what is lost. */
  #resume(ack: JoinAck, history: MessageFrame[], previous: number, kind: JoinKind): void {
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
      // History ended before the ack's seq (it should not): report the rest.
      this.emit("gap", { room: this.name, from: (this.#lastSeq ?? 0) + 1, to: ack.seq });
      this.#lastSeq = ack.seq;
    }
  }

  /** Deliver the live messages held while the join was in flight. */
  #drainBuffer(): void {
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
  #accept(m: MessageFrame): void {
    const last = this.#lastSeq;
    if (last === undefined || m.seq <= last) return;
    if (m.seq === last + 1) {
      this.#lastSeq = m.seq;
      this.emit("message", m);
      return;
    }
    // A hole in the live stream: fetch it from history, holding this message.
    this.#sendJoin("resync");
    this.#buffer.push(m);
  }

  #reset(): void {
    this.#desired = false;
    this.#joining = false;
    this.#joined = false;
    this.#lastSeq = undefined;
    this.#epoch = undefined;
    this.#buffer = [];
    this.#resyncAfterAck = false;
    this.#last = undefined;
  }

  #newWaiter(): Waiter {
    let resolve!: (r: JoinResult) => void;
    let reject!: (e: ShardcastError) => void;
    const promise = new Promise<JoinResult>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const timer = setTimeout(() => {
      if (this.#waiter !== waiter) return;
      this.#clearWaiter();
      const wasIn = this.#joined || this.#joining;
      this.#reset();
      if (wasIn && this.#host.connected) this.#host.request({ type: "leave", room: this.name }).catch(() => {});
      reject(new ShardcastError(CLIENT_CODES.timeout, `join of ${this.name} did not complete within ${this.#host.requestTimeoutMs} ms`));
    }, this.#host.requestTimeoutMs);
    const waiter: Waiter = { resolve, reject, timer, promise };
    this.#waiter = waiter;
    return waiter;
  }

  #clearWaiter(): void {
    if (this.#waiter) clearTimeout(this.#waiter.timer);
    this.#waiter = undefined;
  }
}
