-- seckill stock deduction: ONE call decides a whole ring batch for one item.
--
-- KEYS[1] seckill:{S:I}:stock   hash available / locked / sold / total
-- KEYS[2] seckill:{S:I}:buyers  hash user -> units won
-- KEYS[3] seckill:{S:I}:req     hash request id -> stored outcome
-- KEYS[4] seckill:{S:I}:unpaid  zset order id -> payment deadline (ms)
-- KEYS[5] seckill:{S:I}:orders  hash order id -> "user|quantity|request id"
-- ARGV[1] sale id, ARGV[2] item id, ARGV[3] per-user limit,
-- ARGV[4] payment deadline (epoch ms), then (request id, user id, quantity)
-- triples in arrival order.
--
-- Returns one outcome per request: "ok:<order id>", "sold_out",
-- "duplicate", "limit_exceeded" or "unknown_item". A request id seen
-- before gets its stored outcome, so retries and replays are idempotent.
-- The order id is the first 16 hex digits of sha1(sale, item, user, n),
-- n being the user's units after this win: deterministic, so a replay
-- reproduces it.
local out = {}
if redis.call('EXISTS', KEYS[1]) == 0 then
  for i = 5, #ARGV, 3 do
    out[#out + 1] = 'unknown_item'
  end
  return out
end
local limit = tonumber(ARGV[3])
local deadline = ARGV[4]
local available = tonumber(redis.call('HGET', KEYS[1], 'available') or '0')
local taken = 0
for i = 5, #ARGV - 2, 3 do
  local rid, uid, q = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local res = redis.call('HGET', KEYS[3], rid)
  if not res then
    local n = tonumber(redis.call('HGET', KEYS[2], uid) or '0')
    if q > limit then
      res = 'limit_exceeded'
    elseif n + q > limit then
      res = 'duplicate'
    elseif available < q then
      res = 'sold_out'
    else
      available = available - q
      taken = taken + q
      n = n + q
      redis.call('HSET', KEYS[2], uid, n)
      local oid = string.sub(redis.sha1hex(ARGV[1] .. '\0' .. ARGV[2] .. '\0' .. uid .. '\0' .. n), 1, 16)
      redis.call('ZADD', KEYS[4], deadline, oid)
      redis.call('HSET', KEYS[5], oid, uid .. '|' .. q .. '|' .. rid)
      res = 'ok:' .. oid
    end
    redis.call('HSET', KEYS[3], rid, res)
  end
  out[#out + 1] = res
end
if taken > 0 then
  redis.call('HINCRBY', KEYS[1], 'available', -taken)
  redis.call('HINCRBY', KEYS[1], 'locked', taken)
end
return out
