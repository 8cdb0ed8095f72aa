-- seckill shard take: units of one shard of a sharded item for requests
-- whose home shard was dry (deduct.lua answered `borrow:`), atomically on
-- this shard's keys.
--
-- KEYS[1] seckill:{T}:stock   KEYS[2] seckill:{T}:req
-- KEYS[3] seckill:{T}:unpaid  KEYS[4] seckill:{T}:orders   (this shard's)
-- ARGV[1] sale id, ARGV[2] item id, ARGV[3] payment deadline (epoch ms),
-- ARGV[4] the number of requests n, then n times: request id, user id,
-- quantity.
--
-- Returns one outcome per request, joined by newlines: "ok:<order id>"
-- (the unit is taken here and its order recorded here, under the order
-- id a win at home would have had), "dry" (this shard has not the units)
-- or "unknown_item" (no stock hash). The outcome is stored under the
-- request id, so a re-driven borrow walks the same shards to the same
-- result and never takes a second unit. Whatever else this shard holds
-- under the request id (another user's request of that id) reads as
-- "dry": a request id is never taken over.
local counts = redis.call('HMGET', KEYS[1], 'available', 'locked')
local n = tonumber(ARGV[4])
local out = {}
if not counts[1] then
  for _ = 1, n do
    out[#out + 1] = 'unknown_item'
  end
  return table.concat(out, '\n')
end
local available = tonumber(counts[1])
local taken = 0
for i = 5, 5 + 3 * (n - 1), 3 do
  local rid, uid, q = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local res = redis.call('HGET', KEYS[2], rid)
  if not res then
    if available >= q then
      available = available - q
      taken = taken + q
      local oid = string.sub(redis.sha1hex(ARGV[1] .. '\0' .. ARGV[2] .. '\0' .. uid .. '\0' .. rid), 1, 16)
      redis.call('ZADD', KEYS[3], ARGV[3], oid)
      redis.call('HSET', KEYS[4], oid, uid .. '|' .. q .. '|' .. rid)
      res = 'ok:' .. oid
    else
      res = 'dry'
    end
    redis.call('HSET', KEYS[2], rid, res)
  elseif string.sub(res, 1, 3) == 'ok:' then
    -- Ours only if the order it names is this user's.
    local entry = redis.call('HGET', KEYS[4], string.sub(res, 4)) or ''
    if string.match(entry, '^(.-)|') ~= uid then
      res = 'dry'
    end
  else
    res = 'dry'
  end
  out[#out + 1] = res
end
if taken > 0 then
  redis.call('HSET', KEYS[1], 'available', available, 'locked', tonumber(counts[2] or '0') + taken)
end
return table.concat(out, '\n')
