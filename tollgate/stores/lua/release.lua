-- Drop holds without spending: reserved -= held (never below zero).
-- Called by tollgate/stores/redis.py; mirrors MemoryStore.release in tollgate/stores/memory.py.
--
-- KEYS: for each hold, its slot then its reservation's hold record (see reserve.lua).
-- ARGV: for each hold, its field in the hold record ("" = none: apply unconditionally), then
--       minus the held amount. A hold whose field is gone was undone already: it is skipped.
-- A slot that is gone (expired) is left alone: writing it would create a key without a TTL.

for i = 1, #KEYS / 2 do
  local key, hold, field = KEYS[2 * i - 1], KEYS[2 * i], ARGV[2 * i - 1]
  if field == "" or redis.call("HDEL", hold, field) == 1 then
    if redis.call("EXISTS", key) == 1 then
      if tonumber(redis.call("HINCRBYFLOAT", key, "reserved", ARGV[2 * i])) < 0 then
        redis.call("HSET", key, "reserved", 0)
      end
    end
  end
end
return #KEYS / 2
