-- Extend each lease still held to a new expiry; an expired (or let go) lease stays gone.
-- Called by tollgate/stores/redis.py; mirrors MemoryStore.renew in tollgate/stores/memory.py.
--
-- KEYS: for each lease, its key's leases (a sorted set, see acquire.lua).
-- ARGV: now (the store clock), the new expiry, how long the key lives on the server's clock
-- (milliseconds), then each lease's name, in the order of KEYS.

local now = tonumber(ARGV[1])
for i, leases in ipairs(KEYS) do
  local expires = redis.call("ZSCORE", leases, ARGV[3 + i])
  if expires and tonumber(expires) > now then
    redis.call("ZADD", leases, "XX", ARGV[2], ARGV[3 + i])
    if redis.call("PTTL", leases) < tonumber(ARGV[3]) then
      redis.call("PEXPIRE", leases, ARGV[3])
    end
  end
end
return #KEYS
