//! The data a cluster keeps in Redis, and the Lua scripts that change it.
//!
//! Every change to a room runs as one script, so Redis executes it
//! atomically and in one total order: the script that gives a message its
//! `seq` also appends it to the room's history stream and publishes it on
//! the room's channel, and a join's cap check and its insert cannot
//! interleave with another node's join.
//!
//! Keys of room `R` (the `{R}` hash tag keeps them in one Redis Cluster slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `sc:{R}:m` | hash | `seq`, `private`, `max`, `ovf`, `explicit`, `hist`, `epoch` |
//! | `sc:{R}:p` | hash | presence: field `<node>/<conn>`, value `user`, `user\tname` or `user\tname\tinfo` |
//! | `sc:{R}:u` | hash | users: field `user`, value its member connections (so a user's first join and last leave are seen once, cluster-wide) |
//! | `sc:{R}:h` | stream | history; entry id `<seq>-0`, field `f` = the message JSON |
//! | `sc:{R}:c` | channel | the room's events, in `seq` order (see [`super::wire`]) |
//!
//! Node keys: `sc:nodes` (sorted set: node id by heartbeat deadline, ms of
//! Redis' clock) and `sc:n:<node>` (set of rooms where the node has members).
//!
//! Quota keys (the cluster-wide count of rooms a user, or a connection, made
//! that still exist): `sc:uq:<user>` and `sc:cq:<node>/<conn>`, sorted sets
//! of room names scored by when the room expires (ms of Redis' clock), or
//! `+inf` while it has members or was made by `create`. A room's meta holds
//! its creator (`cu`, `cc`); the scripts that empty, refill or delete a room
//! move its score, and a count first drops the rooms whose time passed, so
//! a room stops counting when it expires without any node being told. Each
//! key expires with its last room.
//! Channels `sc:u:<user>` (direct messages and notifications to a user) and
//! `sc:all` (broadcasts).
//!
//! Scripts answer with an array whose first element is a status: 0 for
//! success, or one of the negative codes of [`Status`]; they never raise, so
//! one refusal cannot fail a pipelined batch.

/// A script's status answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Done.
    Ok,
    /// The room does not exist.
    NotFound,
    /// The connection is not a member.
    NotMember,
    /// Joining would create the room, and the connection may not.
    MayNotCreate,
    /// The room is private and the connection has no grant for it.
    Private,
    /// The room is at `max_members`.
    Full,
    /// `create` of a room that exists.
    Exists,
    /// Only members may list a private room's members.
    PrivateMembers,
    /// A live node has another namespace configuration.
    OtherNamespaces,
    /// The creator (user or connection) made its maximum of rooms that
    /// still exist: `{-9, max, "user" | "connection"}`.
    Quota,
    /// The node is over its memory budget and makes no room.
    OverMemory,
    /// A status this build does not know (a script of another version).
    Unknown(i64),
}

impl Status {
    /// The status a script answered.
    pub(crate) fn from_code(code: i64) -> Status {
        match code {
            0 => Status::Ok,
            -1 => Status::NotFound,
            -2 => Status::NotMember,
            -3 => Status::MayNotCreate,
            -4 => Status::Private,
            -5 => Status::Full,
            -6 => Status::Exists,
            -7 => Status::PrivateMembers,
            -8 => Status::OtherNamespaces,
            -9 => Status::Quota,
            -10 => Status::OverMemory,
            other => Status::Unknown(other),
        }
    }
}

/// Room keys.
pub(crate) fn meta_key(room: &str) -> String {
    format!("sc:{{{room}}}:m")
}
/// Presence hash of a room.
pub(crate) fn presence_key(room: &str) -> String {
    format!("sc:{{{room}}}:p")
}
/// Users hash of a room (member connections per user).
pub(crate) fn users_key(room: &str) -> String {
    format!("sc:{{{room}}}:u")
}
/// History stream of a room.
pub(crate) fn history_key(room: &str) -> String {
    format!("sc:{{{room}}}:h")
}
/// Event channel of a room.
pub(crate) fn room_channel(room: &str) -> String {
    format!("sc:{{{room}}}:c")
}
/// Channel of a user's direct messages and notifications.
pub(crate) fn user_channel(user: &str) -> String {
    format!("sc:u:{user}")
}
/// Channel of broadcasts.
pub(crate) const ALL_CHANNEL: &str = "sc:all";
/// Heartbeat deadlines of the nodes.
pub(crate) const NODES_KEY: &str = "sc:nodes";
/// Each node's namespace fingerprint.
pub(crate) const NAMESPACES_KEY: &str = "sc:ns";
/// Rooms where `node` has members.
pub(crate) fn node_rooms_key(node: &str) -> String {
    format!("sc:n:{node}")
}
/// The presence field of a member connection.
pub(crate) fn member_field(node: &str, conn: u64) -> String {
    format!("{node}/{conn}")
}
/// Rooms a user made that still exist.
pub(crate) fn user_quota_key(user: &str) -> String {
    format!("sc:uq:{user}")
}
/// Rooms a connection (its presence field) made that still exist.
pub(crate) fn conn_quota_key(field: &str) -> String {
    format!("sc:cq:{field}")
}

/// Lua shared by the scripts that make, empty, refill or delete rooms: the
/// quota sorted sets (see the module documentation).
macro_rules! quota_lua {
    () => {
        r#"
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- The key lives as long as its longest-lived room.
local function quota_ttl(key)
  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #top == 0 then return end
  if top[2] == 'inf' then redis.call('PERSIST', key)
  else redis.call('PEXPIREAT', key, math.floor(tonumber(top[2]))) end
end
-- Rooms `key` counts that still exist.
local function quota_count(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms())
  return redis.call('ZCARD', key)
end
-- `room` counts in `key` until `deadline` ('+inf': while it lives on).
local function quota_mark(key, room, deadline)
  redis.call('ZADD', key, deadline, room)
  quota_ttl(key)
end
-- The quota keys of the room whose meta is `meta`.
local function quota_keys(meta)
  local c = redis.call('HMGET', meta, 'cu', 'cc')
  local keys = {}
  if c[1] and c[1] ~= '' then keys[#keys + 1] = 'sc:uq:' .. c[1] end
  if c[2] and c[2] ~= '' then keys[#keys + 1] = 'sc:cq:' .. c[2] end
  return keys
end
-- The room of `meta` is empty and goes in `ttl` ms unless someone joins.
local function quota_emptied(meta, room, ttl)
  local deadline = now_ms() + tonumber(ttl)
  for _, key in ipairs(quota_keys(meta)) do
    if redis.call('ZSCORE', key, room) then quota_mark(key, room, deadline) end
  end
end
-- The room of `meta` has members again.
local function quota_refilled(meta, room)
  for _, key in ipairs(quota_keys(meta)) do
    if redis.call('ZSCORE', key, room) then quota_mark(key, room, '+inf') end
  end
end
-- Making a room for user `user` (key `ukey`, cap `ucap`) on connection
-- field `field` (key `ckey`, cap `ccap`); 0 caps are off, an empty user is
-- the API. Returns the refusal, or nil.
local function quota_refusal(user, ukey, ucap, field, ckey, ccap)
  if user == '' then return nil end
  if tonumber(ucap) > 0 and quota_count(ukey) >= tonumber(ucap) then
    return {-9, tonumber(ucap), 'user'}
  end
  if tonumber(ccap) > 0 and quota_count(ckey) >= tonumber(ccap) then
    return {-9, tonumber(ccap), 'connection'}
  end
  return nil
end
-- Count a room just made.
local function quota_made(meta, room, user, ukey, field, ckey)
  if user == '' then return end
  redis.call('HSET', meta, 'cu', user, 'cc', field)
  quota_mark(ukey, room, '+inf')
  quota_mark(ckey, room, '+inf')
end
"#
    };
}

/// KEYS: meta, presence, history, channel, users, node rooms, the joiner's
/// user quota key, its connection quota key.
/// ARGV: field, member value, create, may_create, auto_create,
/// may_join_private, default max, default overflow, default history,
/// since (-1: none), history_on_join, node, conn, room, the client's epoch
/// (empty: none), a fresh epoch for a room this join makes, private
/// (0/1), the user, most users to list (0: none), per-user cap,
/// per-connection cap, over the memory budget (0/1). Auto-create and the
/// defaults are those of the room's namespace ([`crate::room::namespaces`]).
///
/// A room of a private namespace (`private` 1) is private whatever its
/// hash says, and a join that would make one it may not enter is refused
/// without making it. A `since` with an epoch other than the room's is
/// answered like a join without `since`, with recovered 0 (v1.1). A room
/// without an epoch (made by an older build) gets the fresh one. A join
/// that makes the room counts it against the joiner's quotas; one that
/// refills an empty room keeps it counting.
///
/// Answer: `{0, seq, count, private (0/1), max, overflow, explicit,
/// recovered (-1 none, 0, 1), rejoin (0/1), history length, epoch, users,
/// first of its user (0/1), listed users n, n times (user, member value),
/// message...}`, or `{status}`. The `J` event says `users` and `first` too.
pub(crate) const JOIN: &str = concat!(
    quota_lua!(),
    r#"
local meta, pres, hist, chan, users, noderooms = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
if redis.call('EXISTS', meta) == 0 then
  if ARGV[3] ~= '1' or ARGV[5] ~= '1' then return {-1} end
  if ARGV[4] ~= '1' then return {-3} end
  if ARGV[17] == '1' and ARGV[6] ~= '1' then return {-4} end
  if ARGV[22] == '1' then return {-10} end
  local refused = quota_refusal(ARGV[18], KEYS[7], ARGV[20], ARGV[1], KEYS[8], ARGV[21])
  if refused then return refused end
  redis.call('HSET', meta, 'seq', 0, 'private', ARGV[17], 'max', ARGV[7], 'ovf', ARGV[8],
    'explicit', 0, 'hist', ARGV[9], 'epoch', ARGV[16])
  quota_made(meta, ARGV[14], ARGV[18], KEYS[7], ARGV[1], KEYS[8])
end
local m = redis.call('HMGET', meta, 'seq', 'private', 'max', 'ovf', 'explicit', 'hist', 'epoch')
local seq = tonumber(m[1]) or 0
local epoch = m[7]
if not epoch then
  epoch = ARGV[16]
  redis.call('HSET', meta, 'epoch', epoch)
end
local private = m[2] == '1' or ARGV[17] == '1'
if private and ARGV[6] ~= '1' then return {-4} end
local rejoin = redis.call('HEXISTS', pres, ARGV[1]) == 1
local first = 0
if not rejoin then
  if redis.call('HLEN', pres) >= (tonumber(m[3]) or 0) then return {-5, tonumber(m[3]) or 0} end
  redis.call('HSET', pres, ARGV[1], ARGV[2])
  redis.call('SADD', noderooms, ARGV[14])
  if redis.call('HINCRBY', users, ARGV[18], 1) == 1 then first = 1 end
end
redis.call('PERSIST', meta)
redis.call('PERSIST', hist)
local count = redis.call('HLEN', pres)
if not rejoin and count == 1 then quota_refilled(meta, ARGV[14]) end
local ucount = redis.call('HLEN', users)
local out = {0, seq, count, private and 1 or 0, m[3], m[4], m[5], -1, rejoin and 1 or 0,
  tonumber(m[6]) or 0, epoch, ucount, first}
local want = tonumber(ARGV[19]) or 0
local listed = {}
if want > 0 then
  local seen = {}
  for _, v in ipairs(redis.call('HVALS', pres)) do
    if #listed >= want * 2 then break end
    local u = string.match(v, '^([^\t]*)')
    if not seen[u] then
      seen[u] = true
      listed[#listed + 1] = u
      listed[#listed + 1] = v
    end
  end
end
out[#out + 1] = #listed / 2
for _, x in ipairs(listed) do out[#out + 1] = x end
local since = tonumber(ARGV[10])
if since >= 0 and ARGV[15] ~= '' and ARGV[15] ~= epoch then
  out[8] = 0
  since = -1
end
if since >= 0 then
  local oldest = seq + 1
  local first = redis.call('XRANGE', hist, '-', '+', 'COUNT', 1)
  if #first > 0 then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
  if since <= seq and (since == seq or oldest <= since + 1) then out[8] = 1 else out[8] = 0 end
  if since < seq then
    local from = since + 1
    if from < oldest then from = oldest end
    for _, e in ipairs(redis.call('XRANGE', hist, string.format('%d-0', from), '+')) do
      out[#out + 1] = e[2][2]
    end
  end
else
  local n = tonumber(ARGV[11])
  if n > 0 then
    local entries = redis.call('XREVRANGE', hist, '+', '-', 'COUNT', n)
    for i = #entries, 1, -1 do out[#out + 1] = entries[i][2][2] end
  end
end
if not rejoin then
  redis.call('PUBLISH', chan, 'J ' .. ARGV[12] .. ' ' .. ARGV[13] .. ' ' .. count .. ' ' .. ucount
    .. ' ' .. first .. ' ' .. ARGV[2])
end
return out
"#
);

/// KEYS: meta, presence, history, channel, users, node rooms.
/// ARGV: field, node, conn, node keeps members (0/1), room, empty ttl ms.
///
/// Answer: `{0, count, last of its user (0/1), users, member value}` or
/// `{status}`. The `L` event says `users` and `last` too.
pub(crate) const LEAVE: &str = concat!(
    quota_lua!(),
    r#"
local meta, pres, hist, chan, users, noderooms = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local v = redis.call('HGET', pres, ARGV[1])
if not v then
  if redis.call('EXISTS', meta) == 0 then return {-1} end
  return {-2}
end
redis.call('HDEL', pres, ARGV[1])
local count = redis.call('HLEN', pres)
local u = string.match(v, '^([^\t]*)')
local last = 0
if redis.call('HINCRBY', users, u, -1) <= 0 then
  redis.call('HDEL', users, u)
  last = 1
end
local ucount = redis.call('HLEN', users)
if ARGV[4] == '0' then redis.call('SREM', noderooms, ARGV[5]) end
redis.call('PUBLISH', chan, 'L ' .. ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. count .. ' ' .. ucount
  .. ' ' .. last .. ' ' .. v)
if count == 0 and redis.call('HGET', meta, 'explicit') == '0' then
  redis.call('PEXPIRE', meta, ARGV[6])
  redis.call('PEXPIRE', hist, ARGV[6])
  quota_emptied(meta, ARGV[5], ARGV[6])
end
return {0, count, last, ucount, v}
"#
);

/// KEYS: meta, presence, history, channel.
/// ARGV: field (empty: the system, no membership check), JSON before the
/// seq, JSON after the seq, node, connection to skip (0: none).
///
/// Answer: `{0, seq}` or `{status}`.
pub(crate) const PUBLISH: &str = r#"
local meta, pres, hist, chan = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('EXISTS', meta) == 0 then return {-1} end
if ARGV[1] ~= '' and redis.call('HEXISTS', pres, ARGV[1]) == 0 then return {-2} end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
local msg = ARGV[2] .. seq .. ARGV[3]
local keep = tonumber(redis.call('HGET', meta, 'hist')) or 0
if keep > 0 then
  local id = string.format('%d-0', seq)
  local added = redis.pcall('XADD', hist, 'MAXLEN', keep, id, 'f', msg)
  if type(added) == 'table' and added.err then
    -- A stream left from an earlier life of the room holds larger ids:
    -- it is stale history, start it again.
    redis.call('DEL', hist)
    redis.call('XADD', hist, 'MAXLEN', keep, id, 'f', msg)
  end
  local ttl = redis.call('PTTL', meta)
  if ttl > 0 then redis.call('PEXPIRE', hist, ttl) end
end
redis.call('PUBLISH', chan, 'M ' .. seq .. ' ' .. ARGV[4] .. ' ' .. ARGV[5] .. '\n' .. msg)
return {0, seq}
"#;

/// KEYS: meta, the creator's user quota key, its connection quota key.
/// ARGV: private (0/1), max members, overflow, history length, epoch,
/// room, creator user (empty: the API, not counted), creator field,
/// per-user cap, per-connection cap, over the memory budget (0/1).
///
/// Answer: `{0}` or `{status}`.
pub(crate) const CREATE: &str = concat!(
    quota_lua!(),
    r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return {-6} end
if ARGV[11] == '1' then return {-10} end
local refused = quota_refusal(ARGV[7], KEYS[2], ARGV[9], ARGV[8], KEYS[3], ARGV[10])
if refused then return refused end
redis.call('HSET', KEYS[1], 'seq', 0, 'private', ARGV[1], 'max', ARGV[2], 'ovf', ARGV[3],
  'explicit', 1, 'hist', ARGV[4], 'epoch', ARGV[5])
quota_made(KEYS[1], ARGV[6], ARGV[7], KEYS[2], ARGV[8], KEYS[3])
return {0}
"#
);

/// KEYS: meta, presence, history, channel, users.
/// ARGV: room.
///
/// Answer: `{0, members it had}` or `{status}`.
pub(crate) const DELETE: &str = concat!(
    quota_lua!(),
    r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
for _, key in ipairs(quota_keys(KEYS[1])) do
  redis.call('ZREM', key, ARGV[1])
  quota_ttl(key)
end
local had = redis.call('HLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5])
redis.call('PUBLISH', KEYS[4], 'X')
return {0, had}
"#
);

/// KEYS: meta, presence, history, channel (unused), users.
/// ARGV: asking member's field (empty: the API, no private check), most
/// members to list, private namespace (0/1: the room is private whatever
/// its hash says).
///
/// Answer: `{0, total, seq, private (0/1), max, overflow, explicit, history
/// length, epoch (empty: none yet), history option, users, field, value,
/// field, value...}` or `{status}`.
pub(crate) const DETAILS: &str = r#"
local meta, pres, hist, users = KEYS[1], KEYS[2], KEYS[3], KEYS[5]
if redis.call('EXISTS', meta) == 0 then return {-1} end
local m = redis.call('HMGET', meta, 'seq', 'private', 'max', 'ovf', 'explicit', 'epoch', 'hist')
local private = m[2] == '1' or ARGV[3] == '1'
if private and ARGV[1] ~= '' and redis.call('HEXISTS', pres, ARGV[1]) == 0 then
  return {-7}
end
local out = {0, redis.call('HLEN', pres), tonumber(m[1]) or 0, private and 1 or 0, m[3], m[4],
  m[5], redis.call('XLEN', hist), m[6] or '', tonumber(m[7]) or 0, redis.call('HLEN', users)}
local limit = tonumber(ARGV[2])
local cursor = '0'
local listed = 0
repeat
  local page = redis.call('HSCAN', pres, cursor, 'COUNT', 100)
  cursor = page[1]
  for i = 1, #page[2], 2 do
    if listed < limit then
      out[#out + 1] = page[2][i]
      out[#out + 1] = page[2][i + 1]
      listed = listed + 1
    end
  end
until cursor == '0' or listed >= limit
return out
"#;

/// KEYS: nodes, this node's rooms, namespace fingerprints.
/// ARGV: node, ttl ms, empty-room ttl ms, this node's namespace
/// fingerprint.
///
/// Renews this node's heartbeat (and its fingerprint, which a Redis that
/// restarted lost), then removes every node whose heartbeat ran out: its
/// members leave presence (with `left` events) and the room counts, and
/// its fingerprint goes. Answer: `{0, nodes removed, then (kind, room,
/// user) for each change it made: kind `R` (the user's last connection
/// left) or `V` (the room has no member left; user empty)}`, so the node
/// that swept reports them, once for the cluster.
pub(crate) const HEARTBEAT: &str = concat!(
    quota_lua!(),
    r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
local changes = {}
for _, node in ipairs(dead) do
  local set = 'sc:n:' .. node
  local prefix = node .. '/'
  for _, room in ipairs(redis.call('SMEMBERS', set)) do
    local meta = 'sc:{' .. room .. '}:m'
    local pres = 'sc:{' .. room .. '}:p'
    local hist = 'sc:{' .. room .. '}:h'
    local chan = 'sc:{' .. room .. '}:c'
    local users = 'sc:{' .. room .. '}:u'
    local fields = redis.call('HGETALL', pres)
    local removed = 0
    for i = 1, #fields, 2 do
      if string.sub(fields[i], 1, #prefix) == prefix then
        redis.call('HDEL', pres, fields[i])
        removed = removed + 1
        local conn = string.sub(fields[i], #prefix + 1)
        local count = redis.call('HLEN', pres)
        local u = string.match(fields[i + 1], '^([^\t]*)')
        local last = 0
        if redis.call('HINCRBY', users, u, -1) <= 0 then
          redis.call('HDEL', users, u)
          last = 1
          changes[#changes + 1] = 'R'
          changes[#changes + 1] = room
          changes[#changes + 1] = u
        end
        local ucount = redis.call('HLEN', users)
        redis.call('PUBLISH', chan, 'L ' .. node .. ' ' .. conn .. ' ' .. count .. ' ' .. ucount
          .. ' ' .. last .. ' ' .. fields[i + 1])
      end
    end
    if removed > 0 and redis.call('HLEN', pres) == 0 then
      changes[#changes + 1] = 'V'
      changes[#changes + 1] = room
      changes[#changes + 1] = ''
    end
    if redis.call('HLEN', pres) == 0 and redis.call('HGET', meta, 'explicit') == '0' then
      redis.call('PEXPIRE', meta, ARGV[3])
      redis.call('PEXPIRE', hist, ARGV[3])
      quota_emptied(meta, room, ARGV[3])
    end
  end
  redis.call('DEL', set)
  redis.call('ZREM', KEYS[1], node)
  redis.call('HDEL', KEYS[3], node)
end
local out = {0, #dead}
for _, x in ipairs(changes) do out[#out + 1] = x end
return out
"#
);

/// KEYS: nodes, namespace fingerprints.
/// ARGV: node, this node's namespace fingerprint, ttl ms.
///
/// A node joining the cluster: refused if a live node (its heartbeat not
/// run out) has another fingerprint; otherwise its fingerprint and
/// heartbeat are written in the same step, so two nodes starting at once
/// with different namespaces cannot both pass. Answer: `{0}`, or `{-8,
/// other node, its fingerprint}`.
pub(crate) const NAMESPACES: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, other in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  if other ~= ARGV[1] then
    local theirs = redis.call('HGET', KEYS[2], other)
    if theirs and theirs ~= ARGV[2] then return {-8, other, theirs} end
  end
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return {0}
"#;

/// KEYS: meta, presence, node rooms, users.
/// ARGV: room, last seq this node delivered, private, max, overflow,
/// explicit, history length, node, a fresh epoch, then field, value pairs
/// of this node's members (which replace every entry of the node).
///
/// After a reconnect: puts back what a Redis restart (or a sweep of this
/// node while it was cut off) lost, so the room's `seq` never goes back
/// and presence lists this node's members again. A room Redis still holds
/// keeps its epoch; one Redis lost is put back with the fresh epoch (its
/// history is gone, so a `since` of the old one must not count as
/// recovered), and the first node to restore it decides it for all.
/// Answer: `{0}`.
pub(crate) const RESTORE: &str = r#"
local meta, pres, noderooms = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', meta) == 0 then
  redis.call('HSET', meta, 'seq', ARGV[2], 'private', ARGV[3], 'max', ARGV[4], 'ovf', ARGV[5],
    'explicit', ARGV[6], 'hist', ARGV[7], 'epoch', ARGV[9])
else
  redis.call('HSETNX', meta, 'epoch', ARGV[9])
  if (tonumber(redis.call('HGET', meta, 'seq')) or 0) < tonumber(ARGV[2]) then
    redis.call('HSET', meta, 'seq', ARGV[2])
  end
end
redis.call('PERSIST', meta)
local prefix = ARGV[8] .. '/'
local fields = redis.call('HKEYS', pres)
for _, f in ipairs(fields) do
  if string.sub(f, 1, #prefix) == prefix then redis.call('HDEL', pres, f) end
end
for i = 10, #ARGV, 2 do redis.call('HSET', pres, ARGV[i], ARGV[i + 1]) end
redis.call('SADD', noderooms, ARGV[1])
-- The users hash follows the presence hash again.
local users = KEYS[4]
redis.call('DEL', users)
for _, v in ipairs(redis.call('HVALS', pres)) do
  redis.call('HINCRBY', users, string.match(v, '^([^\t]*)'), 1)
end
return {0}
"#;

/// ARGV: a room name prefix (no glob characters), most rooms.
///
/// The rooms with members whose names start with the prefix: `{0, room,
/// members, users, room, members, users...}`. It scans the keyspace, so
/// it is for the occasional API call, not for the message path.
pub(crate) const ROOMS: &str = r#"
local pattern = 'sc:{' .. ARGV[1] .. '*}:p'
local limit = tonumber(ARGV[2]) or 0
local out = {0}
local cursor = '0'
local found = 0
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000, 'TYPE', 'hash')
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    if found < limit then
      local room = string.sub(key, 5, #key - 3)
      local members = redis.call('HLEN', key)
      if members > 0 then
        out[#out + 1] = room
        out[#out + 1] = members
        out[#out + 1] = redis.call('HLEN', 'sc:{' .. room .. '}:u')
        found = found + 1
      end
    end
  end
until cursor == '0' or found >= limit
return out
"#;

/// Every script, for loading them after each connect.
pub(crate) const ALL: [&str; 10] = [
    JOIN, LEAVE, PUBLISH, CREATE, DELETE, DETAILS, HEARTBEAT, RESTORE, NAMESPACES, ROOMS,
];
