// 100 rooms at once: every subscriber connection is cut (twice) while a
// publisher keeps publishing into all of them. No message may be lost or
// duplicated, and the time from each reconnect (welcome) to the last of
// its rooms' `resumed` events is measured and printed.

import assert from "node:assert/strict";
import { test } from "node:test";
import { assertConsecutive, nextEvent, sdkClient, sleep, startBroker, startProxy, until } from "./helpers.mjs";

const ROOMS = 100;
const SUBSCRIBERS = 10;
const MESSAGES_PER_ROOM = 60;
const CUTS = 2;
/** Publishes in flight at once. */
const WINDOW = 32;

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

test(`${ROOMS} rooms, ${SUBSCRIBERS} subscribers cut ${CUTS} times while publishing: nothing lost, nothing duplicated`, async () => {
  const broker = await startBroker({ env: { SHARDCAST_ROOM__HISTORY: "1000" } });
  const proxy = await startProxy(broker.port);
  const names = Array.from({ length: ROOMS }, (_, i) => `scale-${i}`);

  const subs = [];
  for (let s = 0; s < SUBSCRIBERS; s++) {
    const client = sdkClient(proxy.url, { user: `sub${s}` });
    const seen = new Map(names.map((n) => [n, []]));
    const resumed = [];
    const gaps = [];
    let welcomedAt = 0;
    const sub = { client, seen, resumed, gaps, timings: [] };
    let pending = new Set();
    client.on("welcome", () => {
      welcomedAt = Date.now();
      pending = new Set(names);
    });
    client.connect();
    for (const name of names) {
      const room = client.room(name);
      room.on("message", (m) => seen.get(name).push(m.seq));
      room.on("gap", (g) => gaps.push(g));
      room.on("resumed", (e) => {
        resumed.push(e);
        pending.delete(name);
        if (pending.size === 0) sub.timings.push({ welcome: welcomedAt, resumed: Date.now() });
      });
    }
    await Promise.all(names.map((n) => client.room(n).join()));
    subs.push(sub);
  }

  const pub = sdkClient(broker.url, { user: "publisher" });
  pub.connect();
  await Promise.all(names.map((n) => pub.room(n).join()));
  const total = ROOMS * MESSAGES_PER_ROOM;
  const lastSeq = new Map(names.map((n) => [n, 0]));
  let sent = 0;
  const worker = async () => {
    while (sent < total) {
      const i = sent++;
      const name = names[i % ROOMS];
      const seq = await pub.room(name).publish({ i }, { excludeSelf: true });
      lastSeq.set(name, Math.max(lastSeq.get(name), seq));
    }
  };
  const publishing = Promise.all(Array.from({ length: WINDOW }, worker));

  const cuts = [];
  for (let k = 1; k <= CUTS; k++) {
    await until(() => sent >= (total * k) / (CUTS + 1), `publish progress before cut ${k}`, 60_000);
    const resumedAll = subs.map((s) => nextEvent(s.client, "state", (e) => e.state === "connected"));
    proxy.refuse(true);
    const cutAt = Date.now();
    const severed = proxy.cut();
    assert.equal(severed, SUBSCRIBERS);
    await sleep(200);
    proxy.refuse(false);
    await Promise.all(resumedAll);
    await until(() => subs.every((s) => s.timings.length >= k), `every subscriber resumed all rooms after cut ${k}`);
    cuts.push({ cutAt, lastResumed: Math.max(...subs.map((s) => s.timings[k - 1].resumed)) });
  }
  await publishing;
  await until(
    () => subs.every((s) => names.every((n) => s.seen.get(n).at(-1) === lastSeq.get(n))),
    "every subscriber has every room's last message",
    60_000,
  );

  for (const [i, s] of subs.entries()) {
    assert.deepEqual(s.gaps, [], `subscriber ${i}: no gap`);
    assert.equal(s.resumed.length, ROOMS * CUTS, `subscriber ${i}: one resumed per room per cut`);
    assert.ok(s.resumed.every((e) => e.recovered), `subscriber ${i}: every room recovered`);
    for (const n of names) assertConsecutive(assert, s.seen.get(n), 1, lastSeq.get(n), `subscriber ${i} ${n}`);
  }
  const delivered = subs.reduce((a, s) => a + names.reduce((b, n) => b + s.seen.get(n).length, 0), 0);
  assert.equal(delivered, SUBSCRIBERS * total);

  const reconnectToResumed = subs.flatMap((s) => s.timings.map((t) => t.resumed - t.welcome)).sort((a, b) => a - b);
  const cutToResumed = cuts.map((c) => c.lastResumed - c.cutAt);
  const line =
    `MEASURE reconnect-to-resumed (welcome to the last of ${ROOMS} rooms' resumed, ${SUBSCRIBERS} clients x ${CUTS} cuts): ` +
    `p50 ${percentile(reconnectToResumed, 50)} ms, max ${reconnectToResumed.at(-1)} ms; ` +
    `cut-to-all-resumed (200 ms refused + backoff + rejoin): ${cutToResumed.join(", ")} ms; ` +
    `${delivered} messages delivered, 0 lost, 0 duplicated`;
  console.log(line);
  for (const s of subs) s.client.close();
  pub.close();
  await proxy.close();
  await broker.kill();
});
