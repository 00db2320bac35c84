-- Take one of `most` slots of a key for a lease, if fewer than `most` unexpired leases hold one
-- (a lease that holds one already just gets its new expiry): 1 when taken, else 0.
-- Called by tollgate/stores/redis.py; mirrors MemoryStore.acquire in tollgate/stores/memory.py.
--
-- KEYS: the key's leases, a sorted set of lease -> expiry on the store clock.
-- ARGV: the lease, most, now (the store clock), the lease's expiry, and how long the key lives
-- on the server's clock (milliseconds, a little longer than the lease).

local leases, lease = KEYS[1], ARGV[1]
redis.call("ZREMRANGEBYSCORE", leases, "-inf", ARGV[3])  -- expired: expiry <= now
if not redis.call("ZSCORE", leases, lease) and redis.call("ZCARD", leases) >= tonumber(ARGV[2]) then
  return 0
end
redis.call("ZADD", leases, ARGV[4], lease)
-- Never shorten the key's TTL: another lease may need it for longer.
if redis.call("PTTL", leases) < tonumber(ARGV[5]) then
  redis.call("PEXPIRE", leases, ARGV[5])
end
return 1
