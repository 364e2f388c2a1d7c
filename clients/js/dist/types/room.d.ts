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
import type { ClientFrame, Json, MessageFrame, PresenceFrame, GapFrame } from "./frames.js";
import type { Reply } from "./requests.js";
/** Default `maxBufferedMessages` (per room, while its join is in flight). */
export declare const DEFAULT_MAX_BUFFERED_MESSAGES = 1000;
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
    gap: {
        room: string;
        from: number;
        to: number;
    };
    resumed: {
        room: string;
        recovered: boolean;
        epochChanged: boolean;
    };
    joined: PresenceFrame;
    left: PresenceFrame;
    /** The room was deleted (`reason: "deleted"`), or a rejoin was refused (`code` says why). */
    closed: {
        room: string;
        reason: string;
        code?: string;
    };
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
export declare class Room extends Emitter<RoomEvents> {
    #private;
    readonly name: string;
    /** @internal Made by `client.room(name)`. */
    constructor(name: string, host: RoomHost);
    /** "idle" (not joined), "joining" or "joined". */
    get state(): "idle" | "joining" | "joined";
    /** The last seq delivered, undefined before the first join. */
    get lastSeq(): number | undefined;
    /** The room's incarnation, from the last join ack (v1.1 servers). */
    get epoch(): string | undefined;
    /**
     * Join the room, and rejoin it after every reconnect until {@link leave}.
     * Resolves on the server's ack; rejects with its error code, or `timeout`.
     */
    join(options?: JoinOptions): Promise<JoinResult>;
    /** Publish `data`; resolves with the message's seq. */
    publish(data: Json, options?: {
        excludeSelf?: boolean;
    }): Promise<number>;
    /** The presence list (at most the server's `max_presence_list` entries) and the exact total. */
    members(): Promise<{
        members: Member[];
        total: number;
    }>;
    /** Leave the room; it is not rejoined after reconnects. */
    leave(): Promise<void>;
    /** @internal The client is connected (welcome read): rejoin if wanted. */
    _connected(): void;
    /** @internal The connection dropped. */
    _disconnected(): void;
    /** @internal A `message` frame of this room. */
    _message(m: MessageFrame): void;
    /** @internal A `gap` frame: try history first. */
    _gap(g: GapFrame): void;
    /** @internal `joined` / `left` presence events. */
    _presence(p: PresenceFrame): void;
    /** @internal The room was deleted. */
    _closed(reason: string): void;
    /** @internal The client closed for good: the room is left (a later `connect()` does not rejoin it). */
    _shutdown(reason: string): void;
}
