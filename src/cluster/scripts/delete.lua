if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
for _, key in ipairs(quota_keys(KEYS[1])) do
  redis.call('ZREM', key, ARGV[1])
  quota_ttl(key)
end
local had = redis.call('HLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[5])
redis.call('PUBLISH', KEYS[4], 'X')
return {0, had}
