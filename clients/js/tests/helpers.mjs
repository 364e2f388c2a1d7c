// Test helpers: a real shardcast broker as a child process, a TCP proxy
// that can cut, stall and refuse connections, HS256 tokens, and waiting.
// Everything runs on loopback and stops by itself (every wait is bounded).

import { spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { once } from "node:events";
import { after } from "node:test";
import net from "node:net";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { Client } from "../dist/shardcast-client.js";

const here = dirname(fileURLToPath(import.meta.url));
/** The broker binary: $SHARDCAST_BIN (set by the cargo test), or the workspace's debug build. */
export const BROKER_BIN = process.env.SHARDCAST_BIN ?? join(here, "..", "..", "..", "target", "debug", "shardcast");
/** Longest wait for anything a test expects. */
export const WAIT_MS = 15_000;
/** HMAC secret of the brokers started with `jwt: true`. */
export const SECRET = "shardcast-sdk-test-secret-0123456789abcdef";

// Everything a test file started is stopped when the file ends, even when
// a test failed half-way: brokers, proxies and clients.
const brokers = new Set();
const proxies = new Set();
const clients = new Set();
after(async () => {
  for (const c of clients) c.close();
  for (const p of proxies) await p.close();
  for (const b of brokers) b.proc.kill("SIGKILL");
});
process.on("exit", () => {
  for (const b of brokers) b.proc.kill("SIGKILL");
});

/**
 * Start the broker on 127.0.0.1 (`port` 0: a free one) with extra
 * `SHARDCAST_*` environment `env`. Resolves once it listens.
 */
export async function startBroker({ port = 0, env = {}, jwt = false } = {}) {
  const fullEnv = { ...process.env, RUST_LOG: "info", ...env };
  if (jwt) {
    fullEnv.SHARDCAST_AUTH__MODE = "jwt";
    fullEnv.SHARDCAST_AUTH__SECRET = SECRET;
    fullEnv.SHARDCAST_AUTH__LEEWAY_SECS = "0";
  }
  const proc = spawn(BROKER_BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--shards", "2"], {
    env: fullEnv,
    stdio: ["ignore", "ignore", "pipe"],
  });
  const broker = { proc, port: 0, url: "", http: "", exited: once(proc, "exit") };
  brokers.add(broker);
  broker.exited.then(() => brokers.delete(broker));
  const lines = createInterface({ input: proc.stderr });
  const addr = await withTimeout(
    new Promise((resolve, reject) => {
      lines.on("line", (line) => {
        const m = / addr=(\S+)/.exec(line);
        if (m) resolve(m[1]);
      });
      proc.on("exit", (code) => reject(new Error(`broker exited (${code}) before listening`)));
    }),
    WAIT_MS,
    "broker start",
  );
  broker.port = Number(addr.split(":").pop());
  broker.url = `ws://${addr}/ws`;
  broker.http = `http://${addr}`;
  /** SIGTERM: the broker drains (1001 to every connection) and exits. */
  broker.drain = async () => {
    proc.kill("SIGTERM");
    await withTimeout(broker.exited, WAIT_MS, "broker drain");
  };
  broker.kill = async () => {
    proc.kill("SIGKILL");
    await withTimeout(broker.exited, WAIT_MS, "broker kill");
  };
  return broker;
}

/** An HTTP API call on a broker (loopback: no key needed). */
export async function api(broker, method, path, body) {
  const res = await fetch(broker.http + path, {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/**
 * A TCP proxy in front of `target` (host:port). `cut()` severs every
 * connection (RST), `refuse(true)` closes new ones at once, `stall(dir)`
 * stops forwarding without closing ("up": client to server, "both").
 */
export async function startProxy(targetPort) {
  const pairs = new Set();
  let refusing = false;
  let stalled = null;
  let accepted = 0;
  const server = net.createServer((client) => {
    accepted += 1;
    if (refusing) {
      client.resetAndDestroy();
      return;
    }
    const upstream = net.connect(targetPort, "127.0.0.1");
    const pair = { client, upstream };
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.pipe(upstream);
    upstream.pipe(client);
    applyStall(pair);
  });
  function applyStall(pair) {
    if (stalled === "up" || stalled === "both") pair.client.pause();
    if (stalled === "both") pair.upstream.pause();
  }
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = server.address().port;
  const proxy = {
    port,
    url: `ws://127.0.0.1:${port}/ws`,
    get connections() {
      return pairs.size;
    },
    get accepted() {
      return accepted;
    },
    cut() {
      const n = pairs.size;
      for (const { client, upstream } of [...pairs]) {
        client.resetAndDestroy();
        upstream.destroy();
      }
      pairs.clear();
      return n;
    },
    refuse(on) {
      refusing = on;
    },
    stall(direction) {
      stalled = direction;
      for (const pair of pairs) applyStall(pair);
    },
    resume() {
      stalled = null;
      for (const { client, upstream } of pairs) {
        client.resume();
        upstream.resume();
      }
    },
    async close() {
      proxies.delete(proxy);
      this.cut();
      server.close();
    },
  };
  proxies.add(proxy);
  return proxy;
}

/** A client of the SDK with `ws`, fast reconnects, and its state events recorded. */
export function sdkClient(url, options = {}) {
  const client = new Client(url, {
    WebSocket,
    minReconnectDelayMs: 50,
    maxReconnectDelayMs: 1000,
    ...options,
  });
  clients.add(client);
  client.states = [];
  client.on("state", (e) => client.states.push({ ...e, at: Date.now() }));
  return client;
}

/** Resolve when `emitter` emits `event` with a payload passing `test`. */
export function nextEvent(emitter, event, test = () => true, ms = WAIT_MS) {
  return withTimeout(
    new Promise((resolve) => {
      const off = emitter.on(event, (e) => {
        if (test(e)) {
          off();
          resolve(e);
        }
      });
    }),
    ms,
    `event ${event}`,
  );
}

/** Resolve when `client` reaches `state`. */
export function reach(client, state, ms = WAIT_MS) {
  if (client.state === state) return Promise.resolve();
  return nextEvent(client, "state", (e) => e.state === state, ms);
}

/** Poll `check` until it returns truthy. */
export async function until(check, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** An HS256 JWT for the test brokers' secret. */
export function token(claims) {
  const b64 = (obj) => Buffer.from(JSON.stringify(obj)).toString("base64url");
  const body = `${b64({ alg: "HS256", typ: "JWT" })}.${b64(claims)}`;
  const sig = createHmac("sha256", SECRET).update(body).digest("base64url");
  return `${body}.${sig}`;
}

/** Record every message of `room` (an SDK room handle) into an array. */
export function record(room) {
  const seen = [];
  room.on("message", (m) => seen.push(m.seq));
  return seen;
}

/** Assert `seqs` is exactly first..=last. */
export function assertConsecutive(assert, seqs, first, last, what) {
  const expected = Array.from({ length: last - first + 1 }, (_, i) => first + i);
  assert.deepStrictEqual(seqs, expected, `${what}: every seq once, in order`);
}
