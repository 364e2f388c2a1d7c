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
