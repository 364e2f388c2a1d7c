// The Pusher endpoint of one shardcast node, driven by the real pusher-js
// client, the real `pusher` server SDK and laravel-echo.

import { test, before, after } from 'node:test';
import { createHmac } from 'node:crypto';
import assert from 'node:assert/strict';
import PusherJs from 'pusher-js';
import Echo from 'laravel-echo';
import {
  env, server, client, member, next, connected, subscribed, collect, until, quiet, get,
  webhookReceiver,
} from './common.mjs';

const T = { timeout: 30000 };
const sdk = server(0);
let hooks;
const open = [];

/** A client that is disconnected after the test file. */
function track(pusher) {
  open.push(pusher);
  return pusher;
}

before(async () => {
  hooks = await webhookReceiver();
});

after(async () => {
  for (const p of open) p.disconnect();
  await hooks.close();
});

test('connects: connection_established gives a socket id', T, async () => {
  const p = track(client());
  const socketId = await connected(p);
  assert.match(socketId, /^\d+\.\d+$/);
});

test('an unknown app key is refused with 4001, not a silent close', T, async () => {
  const p = track(client({ key: 'no-such-key' }));
  const { data } = await next(p.connection, 'error');
  // pusher-js reports the handshake's pusher:error, and does not retry.
  assert.equal(data.error.data.code, 4001);
  assert.match(data.error.data.message, /does not exist/);
  await until(() => p.connection.state === 'disconnected', 'the connection to give up');
});

test('public channel: an HTTP event reaches subscribers, with and without socket_id exclusion', T, async () => {
  const a = track(client());
  const b = track(client());
  const { channel: ca } = await subscribed(a, 'news');
  const { channel: cb } = await subscribed(b, 'news');
  const gotA = collect(ca, 'flash');
  const gotB = collect(cb, 'flash');
  await sdk.trigger('news', 'flash', { headline: 'hello' });
  await until(() => gotA.length === 1 && gotB.length === 1, 'both to get the event');
  assert.deepEqual(gotA[0].data, { headline: 'hello' });
  // Excluding a's socket: only b gets it.
  await sdk.trigger('news', 'flash', { headline: 'not for a' }, { socket_id: a.connection.socket_id });
  await until(() => gotB.length === 2, 'b to get the second event');
  await quiet();
  assert.equal(gotA.length, 1, 'the excluded socket got the event');
  // Several channels in one call.
  const { channel: other } = await subscribed(a, 'sports');
  const gotOther = collect(other, 'flash');
  await sdk.trigger(['news', 'sports'], 'flash', 'both');
  await until(() => gotOther.length === 1 && gotA.length === 2, 'both channels');
  assert.equal(gotOther[0].data, 'both');
});

test('batch events reach each channel', T, async () => {
  const a = track(client());
  const { channel: one } = await subscribed(a, 'batch-1');
  const { channel: two } = await subscribed(a, 'batch-2');
  const got1 = collect(one, 'e');
  const got2 = collect(two, 'e');
  await sdk.triggerBatch([
    { channel: 'batch-1', name: 'e', data: { n: 1 } },
    { channel: 'batch-2', name: 'e', data: { n: 2 } },
    { channel: 'batch-1', name: 'e', data: { n: 3 } },
  ]);
  await until(() => got1.length === 2 && got2.length === 1, 'the batch');
  assert.deepEqual(got1.map((e) => e.data.n), [1, 3]);
  assert.deepEqual(got2[0].data, { n: 2 });
});

test('private channel: a good signature subscribes, a bad one gets subscription_error 401', T, async () => {
  const good = track(client());
  const { channel } = await subscribed(good, 'private-orders');
  const got = collect(channel, 'created');
  // A client whose auth endpoint signs with the wrong secret.
  const bad = track(new PusherJs(env.key, {
    cluster: 'mt1', wsHost: env.hosts[0].host, wsPort: env.hosts[0].port, forceTLS: false,
    enabledTransports: ['ws'], disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, cb) => {
        const wrong = new (sdk.constructor)({ appId: env.appId, key: env.key, secret: 'wrong-secret', host: 'x', useTLS: false });
        cb(null, wrong.authorizeChannel(socketId, channelName));
      },
    },
  }));
  await connected(bad);
  const refused = bad.subscribe('private-orders');
  const { data } = await next(refused, 'pusher:subscription_error');
  assert.equal(data.status, 401);
  assert.equal(data.type, 'AuthError');
  assert.match(data.error, /signature/i);
  // The refusal touched nobody else: the good subscriber still gets events.
  await sdk.trigger('private-orders', 'created', { id: 7 });
  await until(() => got.length === 1, 'the good subscriber to get the event');
  assert.equal(bad.connection.state, 'connected');
});

test('private-encrypted channels are passed through: the server never decrypts', T, async () => {
  const a = track(client());
  await connected(a);
  // Subscribe with the raw protocol: pusher-js wants a shared secret from an
  // auth endpoint for encrypted channels; the server only checks the auth.
  const name = 'private-encrypted-vault';
  // The signature the app's auth endpoint gives (without the shared
  // secret, which only the app and its clients know).
  const signature = createHmac('sha256', env.secret)
    .update(`${a.connection.socket_id}:${name}`).digest('hex');
  const auth = { auth: `${env.key}:${signature}` };
  const ok = new Promise((resolve) => {
    a.connection.bind('message', (m) => {
      if (m.event === 'pusher_internal:subscription_succeeded' && m.channel === name) resolve();
    });
  });
  a.send_event('pusher:subscribe', { channel: name, auth: auth.auth });
  await ok;
  const seen = [];
  a.connection.bind('message', (m) => { if (m.channel === name && m.event === 'sealed') seen.push(m.data); });
  const ciphertext = { nonce: 'bm9uY2U=', ciphertext: 'c2VjcmV0' };
  await sdk.post({ path: '/events', body: { name: 'sealed', channels: [name], data: JSON.stringify(ciphertext) } });
  await until(() => seen.length === 1, 'the sealed event');
  assert.deepEqual(seen[0], ciphertext);
});

test('presence: member_added and member_removed once per user, not per connection', T, async () => {
  const ann1 = track(client({ presence: member('ann') }));
  const bob = track(client({ presence: member('bob', { name: 'Bob' }) }));
  const { channel: bobChannel, data: start } = await subscribed(bob, 'presence-room');
  assert.equal(start.count, 1);
  const added = collect(bobChannel, 'pusher:member_added');
  const removed = collect(bobChannel, 'pusher:member_removed');
  const { data: annView } = await subscribed(ann1, 'presence-room');
  assert.equal(annView.count, 2);
  assert.deepEqual(annView.members.bob, { name: 'Bob' });
  await until(() => added.length === 1, 'member_added for ann');
  assert.equal(added[0].data.id, 'ann');
  assert.deepEqual(added[0].data.info, { name: 'user ann' });
  // Ann's second connection: nobody is told again.
  const ann2 = track(client({ presence: member('ann') }));
  const { data: again } = await subscribed(ann2, 'presence-room');
  assert.equal(again.count, 2, 'two users, three connections');
  await quiet();
  assert.equal(added.length, 1, 'member_added went out twice for one user');
  // Her first connection leaves: she is still there.
  ann1.unsubscribe('presence-room');
  await quiet();
  assert.equal(removed.length, 0);
  ann2.disconnect();
  await until(() => removed.length === 1, 'member_removed for ann');
  assert.equal(removed[0].data.id, 'ann');
  // The API sees one user.
  const users = await get(sdk, '/channels/presence-room/users');
  assert.deepEqual(users.users, [{ id: 'bob' }]);
});

test('client events: to the others, never echoed, with user_id on presence channels; refused on public ones', T, async () => {
  const a = track(client({ presence: member('alice') }));
  const b = track(client({ presence: member('bert') }));
  const { channel: ca } = await subscribed(a, 'presence-typing');
  const { channel: cb } = await subscribed(b, 'presence-typing');
  const gotA = collect(ca, 'client-typing');
  const gotB = collect(cb, 'client-typing');
  assert.ok(ca.trigger('client-typing', { typing: true }));
  await until(() => gotB.length === 1, 'b to get the client event');
  assert.deepEqual(gotB[0].data, { typing: true });
  assert.equal(gotB[0].meta.user_id, 'alice');
  await quiet();
  assert.equal(gotA.length, 0, 'the sender got its own client event');
  // On a private channel too, without user_id.
  const { channel: pa } = await subscribed(a, 'private-chat');
  const { channel: pb } = await subscribed(b, 'private-chat');
  const gotPb = collect(pb, 'client-msg');
  pa.trigger('client-msg', 'hi');
  await until(() => gotPb.length === 1, 'the private client event');
  assert.equal(gotPb[0].meta.user_id, undefined);
  // A public channel: pusher:error, and the connection stays.
  const { channel: pub } = await subscribed(a, 'lobby');
  const error = next(a.connection, 'error');
  a.send_event('client-x', { a: 1 }, 'lobby');
  const { data } = await error;
  assert.equal(data.data.code, 4300);
  assert.match(data.data.message, /private or presence/);
  assert.equal(a.connection.state, 'connected');
  assert.ok(pub);
});

test('client events are rate limited per connection with 4301', T, async () => {
  const a = track(client());
  const { channel } = await subscribed(a, 'private-flood');
  const errors = [];
  a.connection.bind('error', (e) => errors.push(e.data));
  for (let i = 0; i < 30; i += 1) channel.trigger('client-spam', { i });
  await until(() => errors.some((e) => e.code === 4301), 'a rate-limit error');
  assert.equal(a.connection.state, 'connected');
});

test('channel queries: list, info, users', T, async () => {
  const a = track(client({ presence: member('q1') }));
  const b = track(client({ presence: member('q2') }));
  await subscribed(a, 'presence-query');
  await subscribed(b, 'presence-query');
  await subscribed(b, 'query-public');
  const all = await get(sdk, '/channels');
  assert.ok('presence-query' in all.channels && 'query-public' in all.channels, JSON.stringify(all));
  const presence = await get(sdk, '/channels', { filter_by_prefix: 'presence-', info: 'user_count' });
  assert.equal(presence.channels['presence-query'].user_count, 2);
  assert.ok(!('query-public' in presence.channels));
  const info = await get(sdk, '/channels/presence-query', { info: 'user_count,subscription_count' });
  assert.deepEqual(info, { occupied: true, user_count: 2, subscription_count: 2 });
  const empty = await get(sdk, '/channels/nobody-here');
  assert.deepEqual(empty, { occupied: false });
  const users = await get(sdk, '/channels/presence-query/users');
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['q1', 'q2']);
  // user_count on a channel that is not presence: 400, as documented.
  await assert.rejects(get(sdk, '/channels/query-public', { info: 'user_count' }), (e) => e.status === 400);
});

test('the API refuses bad signatures and oversize events', T, async () => {
  const wrong = new (sdk.constructor)({
    appId: env.appId, key: env.key, secret: 'not-the-secret', host: env.hosts[0].host,
    port: String(env.hosts[0].port), useTLS: false,
  });
  await assert.rejects(wrong.trigger('news', 'e', {}), (e) => e.status === 401 && /signature/.test(e.body));
  await assert.rejects(sdk.trigger('news', 'e', 'x'.repeat(11 * 1024)), (e) => e.status === 413);
  const many = Array.from({ length: 101 }, (_, i) => `c${i}`);
  await assert.rejects(
    sdk.post({ path: '/events', body: { name: 'e', channels: many, data: '{}' } }),
    (e) => e.status === 400,
  );
});

test('sign-in: terminate_connections closes the user\'s connections; sendToUser reaches them', T, async () => {
  const u = track(client({ user: 'carol' }));
  await connected(u);
  u.signin();
  await u.user.signinDonePromise;
  const got = [];
  u.user.bind('private-note', (data) => got.push(data));
  // The server-to-user channel is subscribed after sign-in.
  await until(() => u.user.serverToUserChannel && u.user.serverToUserChannel.subscribed, 'the user channel');
  await sdk.sendToUser('carol', 'private-note', { hi: 1 });
  await until(() => got.length === 1, 'the event for carol');
  const bystander = track(client());
  await connected(bystander);
  const closed = next(u.connection, 'error', 8000).catch(() => null);
  await sdk.terminateUserConnections('carol');
  await until(() => u.connection.state !== 'connected', 'carol to be disconnected');
  await closed;
  assert.equal(bystander.connection.state, 'connected');
});

test('laravel-echo presence flow: here, joining, leaving', T, async () => {
  const echo = (id) => new Echo({
    broadcaster: 'pusher',
    key: env.key,
    cluster: 'mt1',
    wsHost: env.hosts[0].host,
    wsPort: env.hosts[0].port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    Pusher: PusherJs,
    authorizer: (channel) => ({
      authorize: (socketId, callback) => callback(null, sdk.authorizeChannel(socketId, channel.name, member(id))),
    }),
  });
  const first = echo('e1');
  const second = echo('e2');
  try {
    let here = null;
    const joining = [];
    const leaving = [];
    first.join('chat.1')
      .here((users) => { here = users; })
      .joining((user) => joining.push(user))
      .leaving((user) => leaving.push(user));
    await until(() => here !== null, 'here()');
    assert.deepEqual(here, [{ name: 'user e1' }]);
    let secondHere = null;
    second.join('chat.1').here((users) => { secondHere = users; });
    await until(() => secondHere !== null && joining.length === 1, 'the second to join');
    assert.equal(secondHere.length, 2);
    assert.deepEqual(joining[0], { name: 'user e2' });
    // Echo's whisper is a client event: allowed for this app.
    let whispered = null;
    first.join('chat.1').listenForWhisper('typing', (e) => { whispered = e; });
    second.join('chat.1').whisper('typing', { who: 'e2' });
    await until(() => whispered !== null, 'the whisper');
    assert.deepEqual(whispered, { who: 'e2' });
    second.disconnect();
    await until(() => leaving.length === 1, 'leaving()');
    assert.deepEqual(leaving[0], { name: 'user e2' });
  } finally {
    first.disconnect();
    second.disconnect();
  }
});

test('webhooks: occupied, vacated, member and client events, signed', T, async () => {
  const a = track(client({ presence: member('w1') }));
  const b = track(client({ presence: member('w2') }));
  const { channel } = await subscribed(a, 'presence-hooked');
  await subscribed(b, 'presence-hooked');
  channel.trigger('client-ping', { n: 1 });
  await until(() => hooks.named('client_event', 'presence-hooked').length === 1, 'the client_event webhook');
  const sent = hooks.named('client_event', 'presence-hooked')[0];
  assert.equal(sent.event, 'client-ping');
  assert.deepEqual(JSON.parse(sent.data), { n: 1 });
  assert.equal(sent.user_id, 'w1');
  assert.equal(sent.socket_id, a.connection.socket_id);
  b.disconnect();
  a.unsubscribe('presence-hooked');
  await until(() => hooks.named('channel_vacated', 'presence-hooked').length === 1, 'channel_vacated');
  assert.equal(hooks.named('channel_occupied', 'presence-hooked').length, 1);
  const added = hooks.named('member_added', 'presence-hooked').map((e) => e.user_id).sort();
  const removed = hooks.named('member_removed', 'presence-hooked').map((e) => e.user_id).sort();
  assert.deepEqual(added, ['w1', 'w2']);
  assert.deepEqual(removed, ['w1', 'w2']);
  assert.equal(hooks.invalid, 0, 'a webhook with an invalid signature');
});
