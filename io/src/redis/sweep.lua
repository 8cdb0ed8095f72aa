-- seckill sweeper: releases every unpaid order of one item past its
-- deadline back to `available`, atomically. Several daemons may sweep the
-- same item at once: each order is expired exactly once (the ZREM and the
-- closed check happen inside this one script).
--
-- KEYS as order.lua. ARGV[1] now (epoch ms), ARGV[2] most orders per call,
-- ARGV[3] sale id, ARGV[4] item id, ARGV[5] channel told when stock goes
-- back on sale. Returns {units released, the earliest deadline still
-- waiting (ms) or -1 when no order waits}: the caller need not come back
-- before that deadline.
local now = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local released = 0
for _, oid in ipairs(due) do
  redis.call('ZREM', KEYS[2], oid)
  local entry = redis.call('HGET', KEYS[3], oid)
  if entry and not redis.call('HGET', KEYS[4], oid) then
    local user, q, rid = string.match(entry, '^(.-)|(%d+)|(.*)$')
    q = tonumber(q)
    if q then
      released = released + q
      redis.call('HSET', KEYS[4], oid, 'expired:' .. now)
      redis.call('RPUSH', KEYS[5], cjson.encode({
        v = 1, event = 'expired', order_id = oid, sale_id = ARGV[3], item_id = ARGV[4],
        user_id = user, quantity = q, request_id = rid, at_ms = now }))
    end
  end
end
if released > 0 then
  redis.call('HINCRBY', KEYS[1], 'locked', -released)
  redis.call('HINCRBY', KEYS[1], 'available', released)
  redis.call('PUBLISH', ARGV[5], ARGV[3] .. '\n' .. ARGV[4])
end
local next = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
return {released, tonumber(next[2]) or -1}
