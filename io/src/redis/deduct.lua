-- seckill stock deduction: ONE call decides a whole ring batch, for one item
-- or for several (each item's keys share a hash tag; a call covering
-- several items needs a standalone Redis, see `redis_script_per_item`).
--
-- KEYS, five per item, items in the order of ARGV (T: the item's tag
-- `S:I`, or for a sharded item the tag of the requests' home shard):
--   seckill:{T}:stock   hash available / locked / sold / total
--   seckill:{T}:buyers  hash user -> units won
--   seckill:{T}:req     hash request id -> stored outcome
--   seckill:{T}:unpaid  zset order id -> payment deadline (ms)
--   seckill:{T}:orders  hash order id -> "user|quantity|request id"
-- ARGV[1] the number of items; then per item: sale id, item id, per-user
-- limit, payment deadline (epoch ms), the number of requests n, the
-- shard to borrow from when this one is dry ('' : not sharded), and n
-- (request id, user id, quantity) triples in arrival order.
--
-- Returns one outcome per request, items in order, joined by newlines
-- (one string: the caller parses one reply, not one per request):
-- "ok:<order id>", "sold_out", "duplicate", "limit_exceeded",
-- "unknown_item", or for a sharded item whose home shard is dry
-- "borrow:<shard>:<user>": the user's units are reserved here (the
-- per-user limit counts them) and the unit is to be taken from another
-- shard (take.lua, then finish.lua here). A request id seen before gets
-- its stored outcome, so retries and replays are idempotent (a stored
-- borrow continues where it was); one another user's request stored
-- (a borrow, or a walk's `dry` mark) is `duplicate`: a request id is
-- never taken over. The order id is the first 16 hex digits of
-- sha1(sale, item, user, request id): deterministic, so a replay
-- reproduces it, and never the same for two wins of a user.
local out = {}
local a = 2
for g = 0, tonumber(ARGV[1]) - 1 do
  local stock, buyers, req, unpaid, orders =
    KEYS[g * 5 + 1], KEYS[g * 5 + 2], KEYS[g * 5 + 3], KEYS[g * 5 + 4], KEYS[g * 5 + 5]
  local sale, item, limit, deadline, n, borrow =
    ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2]), ARGV[a + 3], tonumber(ARGV[a + 4]), ARGV[a + 5]
  a = a + 6
  local counts = redis.call('HMGET', stock, 'available', 'locked')
  if not counts[1] then
    -- No stock hash (every loaded item has `available`): not on sale.
    for _ = 1, n do
      out[#out + 1] = 'unknown_item'
    end
  else
    local available = tonumber(counts[1])
    local taken = 0
    for i = a, a + 3 * (n - 1), 3 do
      local rid, uid, q = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
      local res = redis.call('HGET', req, rid)
      if res == 'dry' or (string.sub(res or '', 1, 7) == 'borrow:'
          and string.match(res, '^borrow:%d+:(.*)$') ~= uid) then
        res = 'duplicate'
      elseif not res then
        local units = tonumber(redis.call('HGET', buyers, uid) or '0')
        if q > limit then
          res = 'limit_exceeded'
        elseif units + q > limit then
          res = 'duplicate'
        elseif available < q and borrow == '' then
          res = 'sold_out'
        elseif available < q then
          -- A dry home shard: the units are reserved in the user's count
          -- before any is taken elsewhere, so the limit holds across shards.
          redis.call('HSET', buyers, uid, units + q)
          res = 'borrow:' .. borrow .. ':' .. uid
        else
          available = available - q
          taken = taken + q
          redis.call('HSET', buyers, uid, units + q)
          local oid = string.sub(redis.sha1hex(sale .. '\0' .. item .. '\0' .. uid .. '\0' .. rid), 1, 16)
          redis.call('ZADD', unpaid, deadline, oid)
          redis.call('HSET', orders, oid, uid .. '|' .. q .. '|' .. rid)
          res = 'ok:' .. oid
        end
        redis.call('HSET', req, rid, res)
      end
      out[#out + 1] = res
    end
    if taken > 0 then
      redis.call('HSET', stock, 'available', available, 'locked', tonumber(counts[2] or '0') + taken)
    end
  end
  a = a + 3 * n
end
return table.concat(out, '\n')
