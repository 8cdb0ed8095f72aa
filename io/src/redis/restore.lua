-- seckill rebuild: puts one item's (or one stock shard's) keys back from
-- the record of its wins, atomically, unless it has stock in Redis (live
-- state is never overwritten: another rebuild, or a load, came first).
--
-- KEYS as load.lua. ARGV[1] the stock (total), ARGV[2] when the keys
-- expire (epoch ms), ARGV[3] the number of wins n, then n times seven
-- fields: order id, request id, user id, quantity, payment deadline (ms),
-- closed state ('' while awaiting payment: paid, cancelled, expired,
-- failed), closed at (ms) — each one's order, stored outcome, buyer
-- count and state (a sharded item's wins go back to their users' home
-- shard: every count of a user is there).
--
-- Returns {1, available, locked, sold}, or {0} when the stock was there.
-- `available` may end negative when the record holds more wins than the
-- stock (sold twice before: a failover without WAIT), so that a later
-- release does not sell past the total. The stock hash is written last:
-- a purchase finding none waits (the item is lost until then).
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0}
end
local stock, buyers, req, unpaid, orders, closed = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
redis.call('DEL', stock, buyers, req, unpaid, orders, closed, KEYS[7])
local total = tonumber(ARGV[1])
local locked, sold = 0, 0
local units = {}
local n = tonumber(ARGV[3])
for i = 4, 4 + 7 * (n - 1), 7 do
  local oid, rid, uid, q = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  local deadline, state, at = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6]
  redis.call('HSET', req, rid, 'ok:' .. oid)
  redis.call('HSET', orders, oid, uid .. '|' .. q .. '|' .. rid)
  if state == '' then
    locked = locked + q
    redis.call('ZADD', unpaid, deadline, oid)
  else
    if state == 'paid' then
      sold = sold + q
    end
    redis.call('HSET', closed, oid, state .. ':' .. at)
  end
  units[uid] = (units[uid] or 0) + q
end
for uid, u in pairs(units) do
  redis.call('HSET', buyers, uid, u)
end
for _, k in ipairs({buyers, req, orders, closed}) do
  redis.call('HSET', k, '', '')
end
local available = total - locked - sold
redis.call('HSET', stock, 'available', available, 'locked', locked, 'sold', sold, 'total', total)
for _, k in ipairs({stock, buyers, req, orders, closed}) do
  redis.call('PEXPIREAT', k, ARGV[2])
end
return {1, available, locked, sold}
