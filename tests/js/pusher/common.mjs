// Shared helpers of the Pusher endpoint tests: the real pusher-js client,
// the real `pusher` server SDK (it signs channel auth and every API call),
// and a webhook receiver that checks signatures with the SDK.
//
// The Rust test (tests/it/pusher_js.rs) starts the broker(s) and passes:
//   SHARDCAST_HOSTS   host:port of each node, comma-separated
//   PUSHER_APP_ID, PUSHER_KEY, PUSHER_SECRET
//   WEBHOOK_PORT      where the broker POSTs webhooks

import http from 'node:http';
import PusherJs from 'pusher-js';
import PusherServer from 'pusher';

const required = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run these tests through cargo test (tests/it/pusher_js.rs)`);
  return value;
};

export const env = {
  hosts: required('SHARDCAST_HOSTS').split(',').map((h) => {
    const [host, port] = h.split(':');
    return { host, port: Number(port) };
  }),
  appId: required('PUSHER_APP_ID'),
  key: required('PUSHER_KEY'),
  secret: required('PUSHER_SECRET'),
  webhookPort: Number(process.env.WEBHOOK_PORT || 0),
};

/** The server SDK, talking to node `node`. */
export function server(node = 0) {
  const { host, port } = env.hosts[node];
  return new PusherServer({
    appId: env.appId,
    key: env.key,
    secret: env.secret,
    host,
    port: String(port),
    useTLS: false,
  });
}

const signer = server(0);

/** Presence data of a user, as an app's auth endpoint would give it. */
export const member = (id, info = { name: `user ${id}` }) => ({ user_id: id, user_info: info });

/**
 * A pusher-js client on node `node`. `presence` is the presence member it
 * authorizes as; `user` the id it signs in as.
 */
export function client({ node = 0, presence = member('anon'), user = null, key = env.key } = {}) {
  const { host, port } = env.hosts[node];
  const pusher = new PusherJs(key, {
    cluster: 'mt1',
    wsHost: host,
    wsPort: port,
    forceTLS: false,
    enabledTransports: ['ws'],
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        const data = channelName.startsWith('presence-') ? presence : undefined;
        callback(null, signer.authorizeChannel(socketId, channelName, data));
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        callback(null, signer.authenticateUser(socketId, { id: user }));
      },
    },
  });
  return pusher;
}

/** Resolve with the first `event` of `emitter` (a channel or a connection). */
export function next(emitter, event, ms = 8000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    const handler = (data, meta) => {
      clearTimeout(timer);
      emitter.unbind(event, handler);
      resolve({ data, meta });
    };
    emitter.bind(event, handler);
  });
}

/** Connected: resolves with the socket id. */
export async function connected(pusher) {
  if (pusher.connection.state !== 'connected') await next(pusher.connection, 'connected');
  return pusher.connection.socket_id;
}

/** Subscribe to `name` and wait until the server confirms it. */
export async function subscribed(pusher, name) {
  await connected(pusher);
  const channel = pusher.subscribe(name);
  const { data } = await next(channel, 'pusher:subscription_succeeded');
  return { channel, data };
}

/** Events of `event` on `channel`, as they arrive. */
export function collect(channel, event) {
  const seen = [];
  channel.bind(event, (data, meta) => seen.push({ data, meta }));
  return seen;
}

/** Wait until `check()` is true (polling), or fail after `ms`. */
export async function until(check, what, ms = 8000) {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Nothing more for `ms`. */
export const quiet = (ms = 300) => new Promise((r) => setTimeout(r, ms));

/** The JSON of a signed API GET, through the SDK. */
export async function get(sdk, path, params = {}) {
  const res = await sdk.get({ path, params });
  return res.json();
}

/**
 * The webhook receiver: every request is checked with the SDK's
 * `webhook().isValid()`; `events` are those of valid requests, `invalid`
 * counts the others.
 */
export async function webhookReceiver() {
  const hooks = { events: [], invalid: 0, requests: 0 };
  const sdk = server(0);
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => { body += chunk; });
    req.on('end', () => {
      hooks.requests += 1;
      const webhook = sdk.webhook({ headers: req.headers, rawBody: body });
      if (webhook.isValid()) {
        hooks.events.push(...webhook.getEvents());
      } else {
        hooks.invalid += 1;
      }
      res.writeHead(200);
      res.end('ok');
    });
  });
  await new Promise((resolve) => srv.listen(env.webhookPort, '127.0.0.1', resolve));
  hooks.close = () => new Promise((resolve) => srv.close(resolve));
  hooks.named = (name, channel) => hooks.events.filter((e) => e.name === name && e.channel === channel);
  return hooks;
}
