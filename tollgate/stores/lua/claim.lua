-- Set a flag unless it is set: 1 for the one caller that set it, else 0.
-- Called by tollgate/stores/redis.py; mirrors MemoryStore.claim in tollgate/stores/memory.py.
--
-- KEYS: the flag. ARGV: now (the store clock), the flag's expiry on that clock, and how long
-- the key lives on the server's clock (milliseconds, a little longer than the flag).
-- The expiry is stored and compared with the caller's `now`, as in the other stores; the key's
-- TTL only frees the memory, so clocks a little apart cannot free a flag early.

local expires = redis.call("GET", KEYS[1])
if expires and tonumber(expires) > tonumber(ARGV[1]) then
  return 0
end
redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
return 1
