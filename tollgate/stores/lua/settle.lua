-- Turn holds into spend: reserved -= held (never below zero), spent += actual.
-- Called by tollgate/stores/redis.py; mirrors MemoryStore.settle in tollgate/stores/memory.py.
--
-- KEYS: for each hold, its slot then its reservation's hold record (see reserve.lua).
-- ARGV: for each hold, its field in the hold record ("" = none: apply unconditionally), minus
--       the held amount, then the actual amount.
-- A hold whose field is gone was settled, released or cancelled already: it is skipped, so a
-- settle sent twice (replayed after an outage hid its reply) counts once.
-- A slot that is gone (expired) is left alone: writing it would create a key without a TTL.
-- Returns, for each hold, what its slot has spent once the actual is added: HINCRBYFLOAT's reply,
-- a string at full precision (a Lua number would be truncated to an integer); "" for a hold that
-- was skipped (undone already, or its slot gone). Settles run one at a time on the server, so
-- exactly one of them sees a slot's spend go past any given mark.

local spent = {}
for i = 1, #KEYS / 2 do
  local key, hold, field = KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 * i - 2]
  spent[i] = ""
  if field == "" or redis.call("HDEL", hold, field) == 1 then
    if redis.call("EXISTS", key) == 1 then
      if tonumber(redis.call("HINCRBYFLOAT", key, "reserved", ARGV[3 * i - 1])) < 0 then
        redis.call("HSET", key, "reserved", 0)
      end
      spent[i] = redis.call("HINCRBYFLOAT", key, "spent", ARGV[3 * i])
    end
  end
end
return spent
