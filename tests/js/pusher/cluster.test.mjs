// The Pusher endpoint on two shardcast nodes sharing one Redis: a channel
// is one channel across the cluster, presence and user counts are
// cluster-wide, and webhooks fire once per cluster.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import PusherJs from 'pusher-js';
import Echo from 'laravel-echo';
import {
  env, server, client, member, subscribed, collect, until, quiet, get, webhookReceiver, connected,
} from './common.mjs';

const T = { timeout: 30000 };
const onA = server(0);
const onB = server(1);
let hooks;
const open = [];
const track = (p) => { open.push(p); return p; };

before(async () => { hooks = await webhookReceiver(); });
after(async () => {
  for (const p of open) p.disconnect();
  await hooks.close();
});

test('an event published on node A reaches subscribers on node B; socket_id exclusion works across nodes', T, async () => {
  const a = track(client({ node: 0 }));
  const b1 = track(client({ node: 1 }));
  const b2 = track(client({ node: 1 }));
  const { channel: ca } = await subscribed(a, 'cluster-news');
  const { channel: cb1 } = await subscribed(b1, 'cluster-news');
  const { channel: cb2 } = await subscribed(b2, 'cluster-news');
  const [gotA, gotB1, gotB2] = [collect(ca, 'e'), collect(cb1, 'e'), collect(cb2, 'e')];
  await onA.trigger('cluster-news', 'e', { n: 1 });
  await until(() => gotA.length === 1 && gotB1.length === 1 && gotB2.length === 1, 'every node');
  // Exclude b1 (on node B), publishing through node A.
  await onA.trigger('cluster-news', 'e', { n: 2 }, { socket_id: b1.connection.socket_id });
  await until(() => gotA.length === 2 && gotB2.length === 2, 'the others');
  await quiet();
  assert.equal(gotB1.length, 1, 'the excluded socket on node B got the event');
  // Batches through node B reach node A.
  await onB.triggerBatch([{ channel: 'cluster-news', name: 'e', data: { n: 3 } }]);
  await until(() => gotA.length === 3, 'node A');
  assert.deepEqual(gotA.map((e) => e.data.n), [1, 2, 3]);
});

test('presence is cluster-wide: one member_added per user across nodes, user_count from either node', T, async () => {
  const x = track(client({ node: 0, presence: member('xena') }));
  const { channel: cx } = await subscribed(x, 'presence-cluster');
  const added = collect(cx, 'pusher:member_added');
  const removed = collect(cx, 'pusher:member_removed');
  const y1 = track(client({ node: 1, presence: member('yuri') }));
  const { data: view } = await subscribed(y1, 'presence-cluster');
  assert.equal(view.count, 2);
  assert.deepEqual(view.members.xena, { name: 'user xena' });
  await until(() => added.length === 1, 'member_added from node B');
  // Yuri again, on node A this time: still one user.
  const y2 = track(client({ node: 0, presence: member('yuri') }));
  const { data: again } = await subscribed(y2, 'presence-cluster');
  assert.equal(again.count, 2);
  await quiet();
  assert.equal(added.length, 1, 'a second member_added for one user');
  for (const sdk of [onA, onB]) {
    const info = await get(sdk, '/channels/presence-cluster', { info: 'user_count,subscription_count' });
    assert.deepEqual(info, { occupied: true, user_count: 2, subscription_count: 3 });
    const listed = await get(sdk, '/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
    assert.equal(listed.channels['presence-cluster'].user_count, 2);
  }
  y1.disconnect();
  await quiet();
  assert.equal(removed.length, 0, 'yuri still has a connection');
  y2.disconnect();
  await until(() => removed.length === 1, 'member_removed');
  assert.equal(removed[0].data.id, 'yuri');
});

test('client events cross nodes and are not echoed', T, async () => {
  const a = track(client({ node: 0 }));
  const b = track(client({ node: 1 }));
  const { channel: ca } = await subscribed(a, 'private-cross');
  const { channel: cb } = await subscribed(b, 'private-cross');
  const gotA = collect(ca, 'client-hi');
  const gotB = collect(cb, 'client-hi');
  ca.trigger('client-hi', { from: 'a' });
  await until(() => gotB.length === 1, 'node B');
  await quiet();
  assert.equal(gotA.length, 0);
});

test('terminate_connections closes a user\'s connections on every node', T, async () => {
  const ua = track(client({ node: 0, user: 'zoe' }));
  const ub = track(client({ node: 1, user: 'zoe' }));
  for (const u of [ua, ub]) {
    await connected(u);
    u.signin();
    await u.user.signinDonePromise;
  }
  await onA.terminateUserConnections('zoe');
  await until(() => ua.connection.state !== 'connected' && ub.connection.state !== 'connected', 'both closed');
});

test('webhooks fire once per cluster', T, async () => {
  const a = track(client({ node: 0, presence: member('h1') }));
  const b = track(client({ node: 1, presence: member('h2') }));
  await subscribed(a, 'presence-hooks');
  await subscribed(b, 'presence-hooks');
  a.disconnect();
  b.disconnect();
  await until(() => hooks.named('channel_vacated', 'presence-hooks').length >= 1, 'channel_vacated');
  await quiet(500);
  assert.equal(hooks.named('channel_occupied', 'presence-hooks').length, 1);
  assert.equal(hooks.named('channel_vacated', 'presence-hooks').length, 1);
  assert.deepEqual(hooks.named('member_added', 'presence-hooks').map((e) => e.user_id).sort(), ['h1', 'h2']);
  assert.deepEqual(hooks.named('member_removed', 'presence-hooks').map((e) => e.user_id).sort(), ['h1', 'h2']);
  assert.equal(hooks.invalid, 0);
});

test('laravel-echo presence across nodes: here, joining, leaving', T, async () => {
  const echo = (node, id) => new Echo({
    broadcaster: 'pusher',
    key: env.key,
    cluster: 'mt1',
    wsHost: env.hosts[node].host,
    wsPort: env.hosts[node].port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    Pusher: PusherJs,
    authorizer: (channel) => ({
      authorize: (socketId, callback) => callback(null, onA.authorizeChannel(socketId, channel.name, member(id))),
    }),
  });
  const onNodeA = echo(0, 'ea');
  const onNodeB = echo(1, 'eb');
  try {
    let here = null;
    const joining = [];
    const leaving = [];
    onNodeA.join('room.9')
      .here((users) => { here = users; })
      .joining((user) => joining.push(user))
      .leaving((user) => leaving.push(user));
    await until(() => here !== null, 'here() on node A');
    let hereB = null;
    onNodeB.join('room.9').here((users) => { hereB = users; });
    await until(() => hereB !== null && joining.length === 1, 'node B to join');
    assert.deepEqual(hereB.map((u) => u.name).sort(), ['user ea', 'user eb']);
    assert.deepEqual(joining[0], { name: 'user eb' });
    onNodeB.disconnect();
    await until(() => leaving.length === 1, 'leaving() across nodes');
  } finally {
    onNodeA.disconnect();
    onNodeB.disconnect();
  }
});
