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
