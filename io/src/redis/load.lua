-- seckill sale load: resets one item's stock keys and writes its stock,
-- atomically (the keys share one hash tag, so one slot of a cluster).
--
-- KEYS[1] seckill:{T}:stock   hash available / locked / sold / total
-- KEYS[2] seckill:{T}:buyers  KEYS[3] seckill:{T}:req
-- KEYS[4] seckill:{T}:unpaid  KEYS[5] seckill:{T}:orders
-- KEYS[6] seckill:{T}:closed  KEYS[7] seckill:{T}:events
-- ARGV[1] the stock, ARGV[2] when the keys expire (epoch ms).
--
-- The hashes the other scripts fill get a placeholder field (ids are
-- never empty), so they carry the sale's expiry from the start.
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7])
redis.call('HSET', KEYS[1], 'available', ARGV[1], 'locked', 0, 'sold', 0, 'total', ARGV[1])
for _, k in ipairs({KEYS[2], KEYS[3], KEYS[5], KEYS[6]}) do
  redis.call('HSET', k, '', '')
end
for _, k in ipairs({KEYS[1], KEYS[2], KEYS[3], KEYS[5], KEYS[6]}) do
  redis.call('PEXPIREAT', k, ARGV[2])
end
return 1
