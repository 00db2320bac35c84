-- Undo a reservation whose outcome is unknown (its reply was lost when the server went away):
-- release whatever it holds, and mark it cancelled so that, should the reserve itself arrive
-- later, it holds nothing (see reserve.lua). Idempotent.
-- Called by tollgate/stores/redis.py when it replays operations that failed during an outage.
--
-- KEYS: the reservation's write slots, one per charge in charge order; last, its hold record.
-- ARGV: how long to keep the "cancelled" mark (seconds), then for each charge: minus its amount.

local hold = KEYS[#KEYS]
for i = 1, #KEYS - 1 do
  if redis.call("HDEL", hold, tostring(i)) == 1 and redis.call("EXISTS", KEYS[i]) == 1 then
    if tonumber(redis.call("HINCRBYFLOAT", KEYS[i], "reserved", ARGV[i + 1])) < 0 then
      redis.call("HSET", KEYS[i], "reserved", 0)
    end
  end
end
redis.call("HSET", hold, "cancelled", 1)
redis.call("EXPIRE", hold, ARGV[1])
return 1
