-- Set what each live slot has spent to zero; what is reserved (calls in flight) stays.
-- Called by tollgate/stores/redis.py; mirrors MemoryStore.reset in tollgate/stores/memory.py.
--
-- KEYS: the slots to reset (every read slot of every charge). ARGV: now (the store clock).
-- An expired slot counts as zero already, and a missing one is not created: writing it would
-- make a key without a TTL.

local now = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  local expires = redis.call("HGET", key, "expires")
  if expires and tonumber(expires) > now then
    redis.call("HSET", key, "spent", 0)
  end
end
return #KEYS
