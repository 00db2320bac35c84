-- Reserve every charge's amount, or none of them; or, in "read" mode, only report the states.
-- Called by tollgate/stores/redis.py; mirrors MemoryStore.reserve in tollgate/stores/memory.py.
--
-- KEYS: for each charge, its read slots, then its write slot (again, even if among the reads);
--       then the standing limits' version counter; last, this reservation's hold record.
-- ARGV: mode ("reserve" or "read"), now (the store clock, seconds),
--       then for each charge: number of read slots, limit ("" = unlimited), amount, ttl (seconds).
-- A slot is a hash {spent, reserved, expires}: `expires` is on the store clock, so an expired
-- slot counts as zero exactly as in the other stores; the key's TTL only frees the memory.
-- The hold record is a hash {charge index (1-based) -> amount held}, one per reservation (its
-- key carries a token unique to the reservation), living as long as its longest slot. Settle
-- and release remove a field before touching its slot, so each hold is undone at most once;
-- cancel.lua leaves a "cancelled" field, so a reserve that arrives after its own cancel (or a
-- reserve sent twice) holds nothing.
-- Returns {states, refused, version}: states = {spent1, reserved1, spent2, reserved2, ...} as
-- "%.17g" strings (a Lua number would be truncated to an integer), refused = 0-based charge
-- indexes, version = the standing limits' version (false when never set), read in the same step.

local reserve = ARGV[1] == "reserve"
local now = tonumber(ARGV[2])
local version_key, hold = KEYS[#KEYS - 1], KEYS[#KEYS]
-- Already seen: this very reservation was applied (its command was retried after the reply
-- was lost) or cancelled. It is answered as it was first, and nothing is held again.
local seen = reserve and redis.call("EXISTS", hold) == 1
local cancelled = seen and redis.call("HEXISTS", hold, "cancelled") == 1
local states, refused, writes = {}, {}, {}
local k, a = 0, 2
for i = 1, (#ARGV - 2) / 4 do
  local nread = tonumber(ARGV[a + 1])
  local limit = tonumber(ARGV[a + 2])
  local amount = tonumber(ARGV[a + 3])
  local spent, reserved = 0, 0
  for j = 1, nread do
    local slot = redis.call("HMGET", KEYS[k + j], "spent", "reserved", "expires")
    if slot[3] and tonumber(slot[3]) > now then
      spent = spent + tonumber(slot[1])
      reserved = reserved + tonumber(slot[2])
    end
  end
  if seen then  -- report the state before this reservation's own hold, as the first answer did
    local mine = redis.call("HGET", hold, tostring(i))
    if mine then
      reserved = math.max(0, reserved - tonumber(mine))
    end
  end
  states[#states + 1] = string.format("%.17g", spent)
  states[#states + 1] = string.format("%.17g", reserved)
  -- The same tolerance as fits() in tollgate/stores/base.py.
  if cancelled or (not seen and limit and spent + reserved + amount > limit * (1 + 1e-12)) then
    refused[#refused + 1] = i - 1
  end
  writes[i] = {KEYS[k + nread + 1], ARGV[a + 3], tonumber(ARGV[a + 4])}
  k = k + nread + 1
  a = a + 4
end

if reserve and not seen and #refused == 0 then
  local longest = 0
  for i, w in ipairs(writes) do
    local key, amount, ttl = w[1], w[2], w[3]
    local expires = tonumber(redis.call("HGET", key, "expires"))
    if not expires or expires <= now then
      redis.call("HSET", key, "spent", 0, "reserved", 0)
      expires = 0
    end
    -- HINCRBYFLOAT parses the amount's exact decimal text; Lua's tostring would keep 14 digits.
    redis.call("HINCRBYFLOAT", key, "reserved", amount)
    redis.call("HSET", key, "expires", string.format("%.17g", math.max(expires, now + ttl)))
    -- Never shorten a TTL: another charge may need the slot for longer.
    if redis.call("PTTL", key) < ttl * 1000 then
      redis.call("PEXPIRE", key, ttl * 1000)
    end
    redis.call("HSET", hold, tostring(i), amount)
    longest = math.max(longest, ttl)
  end
  if longest > 0 then
    redis.call("PEXPIRE", hold, longest * 1000)
  end
end
return {states, refused, redis.call("GET", version_key)}
