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
