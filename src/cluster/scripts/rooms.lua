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
