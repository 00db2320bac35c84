-- Reserve every charge's amount, or none of them; or, in "read" mode, only report the states.
-- Called by tollgate/stores/redis.py; mirrors MemoryStore.reserve in tollgate/stores/memory.py.
--
-- KEYS: for each charge, its read slots, then its write slot (again, even if among the reads);
--       last, the standing limits' version counter.
-- ARGV: mode ("reserve" or "read"), now (the store clock, seconds),
--       then for each charge: number of read slots, limit ("" = unlimited), amount, ttl (seconds).
-- A slot is a hash {spent, reserved, expires}: `expires` is on the store clock, so an expired
-- slot counts as zero exactly as in the other stores; the key's TTL only frees the memory.
-- Returns {states, refused, version}: states = {spent1, reserved1, spent2, reserved2, ...} as
-- "%.17g" strings (a Lua number would be truncated to an integer), refused = 0-based charge
-- indexes, version = the standing limits' version (false when never set), read in the same step.

local reserve = ARGV[1] == "reserve"
local now = tonumber(ARGV[2])
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
  states[#states + 1] = string.format("%.17g", spent)
  states[#states + 1] = string.format("%.17g", reserved)
  -- The same tolerance as fits() in tollgate/stores/base.py.
  if limit and spent + reserved + amount > limit * (1 + 1e-12) then
    refused[#refused + 1] = i - 1
  end
  writes[i] = {KEYS[k + nread + 1], ARGV[a + 3], tonumber(ARGV[a + 4])}
  k = k + nread + 1
  a = a + 4
end

if reserve and #refused == 0 then
  for _, w in ipairs(writes) do
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
  end
end
return {states, refused, redis.call("GET", KEYS[#KEYS])}
