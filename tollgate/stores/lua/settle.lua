-- Turn holds into spend: reserved -= held (never below zero), spent += actual.
-- Called by tollgate/stores/redis.py; mirrors MemoryStore.settle in tollgate/stores/memory.py.
--
-- KEYS: the holds' slots. ARGV: for each hold, minus the held amount, then the actual amount.
-- A slot that is gone (expired) is left alone: writing it would create a key without a TTL.

for i, key in ipairs(KEYS) do
  if redis.call("EXISTS", key) == 1 then
    if tonumber(redis.call("HINCRBYFLOAT", key, "reserved", ARGV[2 * i - 1])) < 0 then
      redis.call("HSET", key, "reserved", 0)
    end
    redis.call("HINCRBYFLOAT", key, "spent", ARGV[2 * i])
  end
end
return #KEYS
