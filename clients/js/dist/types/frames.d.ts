/**
 * The frames of the shardcast wire protocol (v1, with the v1.1 additions),
 * as this client reads and writes them. Servers may add fields; the client
 * ignores fields it does not know.
 */
/** Any JSON value (the `data` of messages). */
export type Json = null | boolean | number | string | Json[] | {
    [key: string]: Json;
};
/** The first frame of every connection. */
export interface WelcomeFrame {
    type: "welcome";
    conn: number;
    user: string;
    shard: number;
    node: string;
    heartbeat_ms: number;
    /** "1.1" on servers with room epochs and `refresh`; absent on v1 servers. */
    protocol?: string;
}
/** A message published in a room. */
export interface MessageFrame {
    type: "message";
    room: string;
    seq: number;
    from: string;
    ts: number;
    data: Json;
}
/** A `send` to this user. */
export interface DirectFrame {
    type: "direct";
    from: string;
    ts: number;
    data: Json;
}
/** A `broadcast` to every connection. */
export interface BroadcastFrame {
    type: "broadcast";
    from: string;
    ts: number;
    data: Json;
}
/** Pushed by the server's HTTP API. */
export interface NotificationFrame {
    type: "notification";
    ts: number;
    data: Json;
}
/** Another member joined or left a room. */
export interface PresenceFrame {
    type: "joined" | "left";
    room: string;
    user: string;
    name?: string;
    members: number;
}
/** Messages `from..=to` of a room were dropped for this client by the server. */
export interface GapFrame {
    type: "gap";
    room: string;
    from: number;
    to: number;
}
/** The room was deleted; the connection is no longer in it. */
export interface RoomClosedFrame {
    type: "room_closed";
    room: string;
    reason: string;
}
/** The success reply to a frame that carried `id`. */
export interface AckFrame {
    type: "ack";
    id: number;
    [field: string]: unknown;
}
/** A failure. */
export interface ErrorFrame {
    type: "error";
    id?: number;
    code: string;
    message: string;
}
/** The reply to `ping`. */
export interface PongFrame {
    type: "pong";
    id?: number;
}
/** The ack of a `join`. */
export interface JoinAck extends AckFrame {
    room: string;
    seq: number;
    members: number;
    history: MessageFrame[];
    recovered?: boolean;
    /** v1.1: the room's incarnation. */
    epoch?: string;
}
export type ServerFrame = WelcomeFrame | MessageFrame | DirectFrame | BroadcastFrame | NotificationFrame | PresenceFrame | GapFrame | RoomClosedFrame | AckFrame | ErrorFrame | PongFrame;
/** A frame from the client (without `id`, which the client adds). */
export type ClientFrame = {
    type: "join";
    room: string;
    since?: number;
    epoch?: string;
    create?: boolean;
} | {
    type: "leave";
    room: string;
} | {
    type: "publish";
    room: string;
    data: Json;
    exclude_self?: boolean;
} | {
    type: "send";
    to: string;
    data: Json;
} | {
    type: "broadcast";
    data: Json;
} | {
    type: "members";
    room: string;
} | {
    type: "refresh";
    token: string;
} | {
    type: "ping";
};
/** Parse one text frame; undefined if it is not a JSON object with a string `type`. */
export declare function parseFrame(text: string): ServerFrame | undefined;
/** True if `protocol` (from `welcome`) is at least major.minor. */
export declare function speaksAtLeast(protocol: string | undefined, major: number, minor: number): boolean;
