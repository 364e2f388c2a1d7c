if redis.call('EXISTS', KEYS[1]) == 1 then return {-6} end
if ARGV[11] == '1' then return {-10} end
local refused = quota_refusal(ARGV[7], KEYS[2], ARGV[9], ARGV[8], KEYS[3], ARGV[10])
if refused then return refused end
redis.call('HSET', KEYS[1], 'seq', 0, 'private', ARGV[1], 'max', ARGV[2], 'ovf', ARGV[3],
  'explicit', 1, 'hist', ARGV[4], 'epoch', ARGV[5])
quota_made(KEYS[1], ARGV[6], ARGV[7], KEYS[2], ARGV[8], KEYS[3])
return {0}
