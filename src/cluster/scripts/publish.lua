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
