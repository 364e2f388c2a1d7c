// Fault tests against the real broker: cut connections, restarts, drains,
// token refresh, timeouts, refusals. Each test starts its own broker.

import assert from "node:assert/strict";
import { test } from "node:test";
import WebSocket from "ws";
import {
  api,
  assertConsecutive,
  nextEvent,
  reach,
  record,
  sdkClient,
  sleep,
  startBroker,
  startProxy,
  token,
  until,
} from "./helpers.mjs";

test("a cut TCP connection: messages published during the outage arrive once, in order (recovered)", async () => {
  // History long enough for the whole outage (about 300 messages at most).
  const broker = await startBroker({ env: { SHARDCAST_ROOM__HISTORY: "2000" } });
  const proxy = await startProxy(broker.port);
  const sub = sdkClient(proxy.url, { user: "sub" });
  const pub = sdkClient(broker.url, { user: "pub" });
  sub.connect();
  pub.connect();
  const subRoom = sub.room("cut");
  const seen = record(subRoom);
  const resumed = [];
  const gaps = [];
  subRoom.on("resumed", (e) => resumed.push(e));
  subRoom.on("gap", (e) => gaps.push(e));
  await subRoom.join();
  const pubRoom = pub.room("cut");
  await pubRoom.join();

  let last = 0;
  let publishing = true;
  const publisher = (async () => {
    while (publishing) {
      last = await pubRoom.publish({ n: last + 1 }, { excludeSelf: true });
      await sleep(2);
    }
  })();
  await until(() => seen.length >= 20, "messages before the cut");
  proxy.refuse(true);
  assert.equal(proxy.cut(), 1);
  const cutAt = last;
  await sleep(300);
  proxy.refuse(false);
  await nextEvent(subRoom, "resumed");
  await until(() => last >= cutAt + 40, "messages after the reconnect");
  publishing = false;
  await publisher;
  await until(() => seen.at(-1) === last, `the last seq ${last}`);
  assert.deepEqual(gaps, []);
  assertConsecutive(assert, seen, 1, last, "cut");
  assert.deepEqual(resumed, [{ room: "cut", recovered: true, epochChanged: false }]);
  assert.ok(sub.states.some((s) => s.state === "disconnected"), "the cut was noticed");
  sub.close();
  pub.close();
  await proxy.close();
  await broker.kill();
});

test("broker drained (1001) and restarted: immediate jittered reconnect, then resumed with recovered:false", async () => {
  const first = await startBroker();
  const c = sdkClient(first.url, { user: "r", minReconnectDelayMs: 200 });
  c.connect();
  const room = c.room("restart");
  const seen = record(room);
  await room.join();
  for (let i = 0; i < 3; i++) await room.publish(i);
  await until(() => seen.length === 3, "3 messages");
  const epochBefore = room.epoch;

  const drained = nextEvent(c, "state", (e) => e.state === "disconnected");
  await first.drain();
  const d = await drained;
  assert.equal(d.code, 1001, JSON.stringify(d));
  assert.ok(d.delayMs <= 200, `1001 reconnects within the first backoff window, not after ${d.delayMs} ms`);

  const resumed = nextEvent(room, "resumed");
  const second = await startBroker({ port: first.port });
  const r = await resumed;
  assert.deepEqual(r, { room: "restart", recovered: false, epochChanged: true });
  if (epochBefore !== undefined) assert.notEqual(room.epoch, epochBefore);
  const seq = await room.publish("after");
  assert.equal(seq, 1, "a new incarnation starts at seq 1");
  await until(() => seen.at(-1) === 1, "the new incarnation's message");
  assert.deepEqual(seen, [1, 2, 3, 1]);
  c.close();
  await second.kill();
});

test("room deleted and recreated during an outage: the new incarnation is never taken for missed messages (v1.1 epoch)", async () => {
  const broker = await startBroker();
  const proxy = await startProxy(broker.port);
  const sub = sdkClient(proxy.url, { user: "sub" });
  const pub = sdkClient(broker.url, { user: "pub" });
  sub.connect();
  pub.connect();
  const subRoom = sub.room("epoch");
  const seen = record(subRoom);
  await subRoom.join();
  const pubRoom = pub.room("epoch");
  await pubRoom.join();
  for (let i = 0; i < 3; i++) await pubRoom.publish(i);
  await until(() => seen.length === 3, "3 messages");
  assert.equal(pub.welcome.protocol, "1.1", "the broker speaks protocol 1.1");
  assert.ok(subRoom.epoch, "the join ack carries an epoch");

  proxy.refuse(true);
  proxy.cut();
  const closed = nextEvent(pubRoom, "closed");
  assert.equal((await api(broker, "DELETE", "/api/rooms/epoch")).status, 200);
  await closed;
  await pubRoom.join();
  for (let i = 0; i < 5; i++) await pubRoom.publish(`new ${i}`);
  proxy.refuse(false);
  const r = await nextEvent(subRoom, "resumed");
  assert.deepEqual(r, { room: "epoch", recovered: false, epochChanged: true });
  await sleep(100);
  assert.deepEqual(seen, [1, 2, 3], "messages of the new incarnation are not delivered as missed ones");
  const next = await pubRoom.publish("live");
  await until(() => seen.at(-1) === next, "live message of the new incarnation");
  sub.close();
  pub.close();
  await proxy.close();
  await broker.kill();
});

test("token refresh before expiry keeps the connection (v1.1 refresh)", async () => {
  const broker = await startBroker({ jwt: true });
  const tokens = [];
  const getToken = async () => {
    const t = token({ sub: "refresher", exp: Math.floor(Date.now() / 1000) + 3 });
    tokens.push(t);
    return t;
  };
  const c = sdkClient(broker.url, { getToken, refreshBeforeExpiryMs: 1500 });
  const welcomes = [];
  const refreshed = [];
  c.on("welcome", (w) => welcomes.push(w.conn));
  c.on("refreshed", (e) => refreshed.push(e.exp));
  c.connect();
  const room = c.room("tok");
  await room.join();
  await sleep(6500);
  assert.equal(c.state, "connected");
  assert.equal(welcomes.length, 1, `one connection throughout, got ${welcomes.length}: ${JSON.stringify(c.states)}`);
  assert.ok(refreshed.length >= 2, `refreshed ${refreshed.length} times`);
  assert.ok(tokens.length >= 3);
  assert.equal(await room.publish("still here"), 1);
  c.close();
  await broker.kill();
});

test("a token that expires (1008 `token expired`) reconnects with a new one and resumes", async () => {
  const broker = await startBroker({ jwt: true });
  let calls = 0;
  const getToken = async () => {
    calls += 1;
    if (calls === 2) throw new Error("token service down"); // the refresh fails
    return token({ sub: "expiring", exp: Math.floor(Date.now() / 1000) + (calls === 1 ? 2 : 60) });
  };
  const c = sdkClient(broker.url, { getToken });
  c.connect();
  const room = c.room("expiry");
  await room.join();
  const expired = await nextEvent(c, "state", (e) => e.state === "disconnected");
  assert.equal(expired.code, 1008);
  assert.match(expired.reason, /token expired/);
  const r = await nextEvent(room, "resumed");
  assert.equal(r.recovered, true);
  assert.equal(c.state, "connected");
  assert.equal(calls, 3);
  c.close();
  await broker.kill();
});

test("an invalid token (401) stops the client: no reconnect, the reason says why", async () => {
  const broker = await startBroker({ jwt: true });
  const c = sdkClient(broker.url, { getToken: async () => "not-a-jwt" });
  c.connect();
  const e = await nextEvent(c, "state", (s) => s.state === "closed");
  assert.match(e.reason, /refused: 401 unauthorized/);
  await sleep(200);
  assert.equal(c.states.filter((s) => s.state === "connecting").length, 1);
  await broker.kill();
});

test("request timeout, a dropped in-flight request, and a dead connection detected by silence", async () => {
  const broker = await startBroker({ env: { SHARDCAST_LIMITS__HEARTBEAT_INTERVAL_MS: "300" } });
  const proxy = await startProxy(broker.port);
  const c = sdkClient(proxy.url, { user: "t", requestTimeoutMs: 400, heartbeatMarginMs: 400 });
  c.connect();
  const room = c.room("timeouts");
  await room.join();

  proxy.stall("up");
  const started = Date.now();
  await assert.rejects(room.publish("lost"), { code: "timeout" });
  const took = Date.now() - started;
  assert.ok(took >= 390 && took < 2000, `timed out after ${took} ms`);

  const inFlight = room.publish("in flight");
  proxy.cut();
  await assert.rejects(inFlight, { code: "disconnected" });
  const rejoined = nextEvent(room, "resumed");
  proxy.resume();
  await rejoined;

  // Silence both ways: the server's pings and our pongs stop; the client notices.
  const dead = nextEvent(c, "state", (e) => e.state === "disconnected");
  const stalledAt = Date.now();
  proxy.stall("both");
  const e = await dead;
  const noticed = Date.now() - stalledAt;
  assert.match(e.reason, /no traffic from the server/);
  assert.ok(noticed >= 600 && noticed < 3000, `dead connection noticed after ${noticed} ms`);
  proxy.resume();
  await reach(c, "connected");
  assert.equal(await room.publish("back"), 1);
  c.close();
  await proxy.close();
  await broker.kill();
});

test("503 with Retry-After: the client waits at least that long, then connects", async () => {
  const broker = await startBroker({ env: { SHARDCAST_LIMITS__MAX_CONNECTIONS: "1" } });
  const occupant = new WebSocket(`${broker.url}?user=occupant`);
  await new Promise((resolve, reject) => {
    occupant.once("message", resolve);
    occupant.once("error", reject);
  });
  const c = sdkClient(broker.url, { user: "waiter" });
  const refused = nextEvent(c, "state", (e) => e.state === "disconnected");
  c.connect();
  const e = await refused;
  const refusedAt = Date.now();
  assert.match(e.reason, /refused: 503 server_full/);
  assert.match(e.reason, /Retry-After 1000 ms/);
  assert.ok(e.delayMs >= 1000, `waits at least Retry-After, not ${e.delayMs} ms`);
  occupant.close();
  await reach(c, "connected");
  assert.ok(Date.now() - refusedAt >= 1000, "no attempt before Retry-After passed");
  c.close();
  await broker.kill();
});

test("publishes made while disconnected are sent after the rejoin; the queue is bounded", async () => {
  const broker = await startBroker();
  const proxy = await startProxy(broker.port);
  const c = sdkClient(proxy.url, { user: "q", maxPendingRequests: 3 });
  c.connect();
  const room = c.room("queue");
  const seen = record(room);
  await room.join();
  proxy.refuse(true);
  proxy.cut();
  await reach(c, "disconnected");
  const queued = [room.publish("a"), room.publish("b"), room.publish("c")];
  await assert.rejects(room.publish("d"), { code: "queue_full" });
  proxy.refuse(false);
  assert.deepEqual(await Promise.all(queued), [1, 2, 3]);
  await until(() => seen.length === 3, "own messages");
  assert.deepEqual(seen, [1, 2, 3]);
  c.close();
  await proxy.close();
  await broker.kill();
});
