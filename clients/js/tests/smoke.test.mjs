// Basics against the real broker: join, publish, requests and their errors.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { api, nextEvent, reach, record, sdkClient, sleep, startBroker, until } from "./helpers.mjs";

let broker;
before(async () => {
  broker = await startBroker();
});
after(async () => {
  await broker?.kill();
});

test("join, publish, members, send, leave", async () => {
  const alice = sdkClient(broker.url, { user: "alice" });
  const bob = sdkClient(broker.url, { user: "bob", name: "Bob" });
  alice.connect();
  bob.connect();
  await Promise.all([reach(alice, "connected"), reach(bob, "connected")]);
  assert.equal(alice.welcome.user, "alice");

  const aRoom = alice.room("smoke");
  const bRoom = bob.room("smoke");
  const seen = record(bRoom);
  const first = await aRoom.join();
  assert.equal(first.members, 1);
  const joined = nextEvent(aRoom, "joined");
  await bRoom.join();
  assert.equal((await joined).user, "bob");
  const seq = await aRoom.publish({ text: "hi" });
  assert.equal(seq, 1);
  await until(() => seen.length === 1, "bob gets the message");
  assert.deepEqual(seen, [1]);

  const { members, total } = await aRoom.members();
  assert.equal(total, 2);
  assert.deepEqual(members.map((m) => m.user).sort(), ["alice", "bob"]);

  const direct = nextEvent(bob, "direct");
  await alice.send("bob", { ping: 1 });
  assert.deepEqual((await direct).data, { ping: 1 });

  const notified = nextEvent(bob, "notification");
  await api(broker, "POST", "/api/notify", { user: "bob", data: "n" });
  assert.equal((await notified).data, "n");

  const left = nextEvent(aRoom, "left");
  await bRoom.leave();
  assert.equal((await left).user, "bob");
  assert.equal(bRoom.state, "idle");
  alice.close();
  bob.close();
  assert.equal(alice.state, "closed");
});

test("a request the server refuses rejects with the server's code", async () => {
  const c = sdkClient(broker.url, { user: "carol" });
  c.connect();
  await assert.rejects(c.room("never-joined").publish(1), { code: "room_not_found" });
  await c.room("exists").join();
  const other = sdkClient(broker.url, { user: "dave" });
  other.connect();
  await assert.rejects(other.room("exists").publish(1), { code: "not_member" });
  await assert.rejects(c.broadcast("x"), { code: "forbidden" });
  c.close();
  other.close();
  await assert.rejects(c.room("exists").publish(1), { code: "closed" });
  assert.equal(c.room("exists").state, "idle", "close() leaves the rooms");
});

test("history on join, and a join refused", async () => {
  const p = sdkClient(broker.url, { user: "pub" });
  p.connect();
  const room = p.room("hist");
  await room.join();
  for (let i = 0; i < 3; i++) await room.publish(i);
  const late = sdkClient(broker.url, { user: "late" });
  late.connect();
  const lateRoom = late.room("hist");
  const seen = record(lateRoom);
  const ack = await lateRoom.join({ history: true });
  assert.equal(ack.seq, 3);
  assert.deepEqual(seen, [1, 2, 3]);
  await assert.rejects(late.room("no-such-room").join({ create: false }), { code: "room_not_found" });
  p.close();
  late.close();
});

test("kicked by the API (1008): closed, no reconnect, reason given", async () => {
  const c = sdkClient(broker.url, { user: "kicked" });
  c.connect();
  await reach(c, "connected");
  const closed = nextEvent(c, "state", (e) => e.state === "closed");
  const res = await api(broker, "DELETE", `/api/connections/${c.welcome.conn}`);
  assert.equal(res.status, 200);
  const e = await closed;
  assert.equal(e.code, 1008);
  assert.match(e.reason, /disconnected by the server's API/);
  await sleep(300);
  assert.equal(c.state, "closed", "no reconnect after a kick");
  assert.equal(c.states.at(-1).state, "closed");
});
