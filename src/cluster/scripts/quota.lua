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
