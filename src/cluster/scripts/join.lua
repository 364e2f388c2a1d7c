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
