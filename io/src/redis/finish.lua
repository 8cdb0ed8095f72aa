-- seckill borrow finish: on the home shard of a sharded item, ends the
-- borrows of requests whose unit was found on another shard
-- ("ok:<order id>") or on none ("sold_out": the units reserved in the
-- user's count are given back).
--
-- KEYS[1] seckill:{T}:buyers  KEYS[2] seckill:{T}:req   (the home shard's)
-- ARGV[1] the number of requests n, then n times: request id, user id,
-- quantity, outcome.
--
-- Returns each request's stored outcome after the call, joined by
-- newlines. Only a borrow the same user stored is ended: a second finish
-- (a re-drive) changes nothing and returns the same.
local out = {}
for i = 2, 2 + 4 * (tonumber(ARGV[1]) - 1), 4 do
  local rid, uid, q, res = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local cur = redis.call('HGET', KEYS[2], rid)
  if cur and string.match(cur, '^borrow:%d+:(.*)$') == uid then
    if res == 'sold_out' then
      redis.call('HINCRBY', KEYS[1], uid, -q)
    end
    redis.call('HSET', KEYS[2], rid, res)
    cur = res
  end
  out[#out + 1] = cur or ''
end
return table.concat(out, '\n')
