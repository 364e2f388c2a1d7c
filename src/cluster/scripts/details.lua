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
