-- Drop holds without spending: reserved -= held (never below zero).
-- Called by tollgate/stores/redis.py; mirrors MemoryStore.release in tollgate/stores/memory.py.
--
-- KEYS: the holds' slots. ARGV: for each hold, minus the held amount.
-- A slot that is gone (expired) is left alone: writing it would create a key without a TTL.

for i, key in ipairs(KEYS) do
  if redis.call("EXISTS", key) == 1 then
    if tonumber(redis.call("HINCRBYFLOAT", key, "reserved", ARGV[i])) < 0 then
      redis.call("HSET", key, "reserved", 0)
    end
  end
end
return #KEYS
