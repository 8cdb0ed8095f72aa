-- seckill order action: pay, cancel or fail one order, atomically.
--
-- KEYS[1] seckill:{S:I}:stock   hash available / locked / sold / total
-- KEYS[2] seckill:{S:I}:unpaid  zset order id -> payment deadline (ms)
-- KEYS[3] seckill:{S:I}:orders  hash order id -> "user|quantity|request id"
-- KEYS[4] seckill:{S:I}:closed  hash order id -> "paid|cancelled|expired:<ms>"
-- KEYS[5] seckill:{S:I}:events  list of order events waiting for Kafka
-- ARGV[1] order id, ARGV[2] "pay", "cancel" or "fail", ARGV[3] the user who
-- asks (ignored by "fail"),
-- ARGV[4] now (epoch ms), ARGV[5] sale id, ARGV[6] item id,
-- ARGV[7] channel told when stock goes back on sale.
--
-- Returns {result, state}: result "done" (this call changed the order),
-- "again" (already in the asked state: idempotent), "conflict" (closed
-- otherwise), "forbidden" (someone else's order) or "unknown_order".
-- An order past its deadline is expired here, even before the sweeper
-- gets to it: paying late never succeeds.
--
-- "fail" is the order service's backlog release (seed 003 §5.6): the win's
-- message came too late to become an order, so the unit goes back on sale
-- with the rules of a cancel. Its event is published by the order service
-- itself (before it commits the message's offset), not through the outbox.
local oid, action, now = ARGV[1], ARGV[2], tonumber(ARGV[4])
local entry = redis.call('HGET', KEYS[3], oid)
if not entry or entry == '' then
  return {'unknown_order', ''}
end
local user, q, rid = string.match(entry, '^(.-)|(%d+)|(.*)$')
q = tonumber(q)
if action ~= 'fail' and user ~= ARGV[3] then
  return {'forbidden', ''}
end
local function close(state)
  redis.call('ZREM', KEYS[2], oid)
  redis.call('HSET', KEYS[4], oid, state .. ':' .. now)
  if state ~= 'failed' then
    redis.call('RPUSH', KEYS[5], cjson.encode({
      v = 1, event = state, order_id = oid, sale_id = ARGV[5], item_id = ARGV[6],
      user_id = user, quantity = q, request_id = rid, at_ms = now }))
  end
  if state == 'paid' then
    redis.call('HINCRBY', KEYS[1], 'locked', -q)
    redis.call('HINCRBY', KEYS[1], 'sold', q)
  else
    redis.call('HINCRBY', KEYS[1], 'locked', -q)
    redis.call('HINCRBY', KEYS[1], 'available', q)
    redis.call('PUBLISH', ARGV[7], ARGV[5] .. '\n' .. ARGV[6])
  end
end
local closed = redis.call('HGET', KEYS[4], oid)
if not closed then
  local deadline = redis.call('ZSCORE', KEYS[2], oid)
  if deadline and tonumber(deadline) <= now then
    close('expired')
    closed = 'expired:' .. now
  elseif action == 'pay' then
    close('paid')
    return {'done', 'paid'}
  elseif action == 'fail' then
    close('failed')
    return {'done', 'failed'}
  else
    close('cancelled')
    return {'done', 'cancelled'}
  end
end
local state = string.match(closed, '^(%a+)')
if (action == 'pay' and state == 'paid') or (action == 'cancel' and state == 'cancelled')
    or (action == 'fail' and state == 'failed') then
  return {'again', state}
end
return {'conflict', state}
