-- Take, refill, renew or return escrow slices; mirrors slice_step in tollgate/stores/base.py
-- and MemoryStore._slice in tollgate/stores/memory.py. Called by tollgate/stores/redis.py.
--
-- KEYS: for each slice, its counter slot (a hash, see reserve.lua), the slot's live slices (a
--       sorted set of slice id -> expiry on the store clock) and the slot's slice records (a
--       hash of slice id -> "held reported given state", state 0 new, 1 live, 2 expired,
--       3 returned; a returned record stays, so a return sent twice counts once).
-- ARGV: mode ("take" or "return"), now (the store clock), the slices' ttl (seconds), then for
--       each slice: id ("" = only reap the slot), limit, the slot's ttl, spent and given back
--       (running totals), want, least, floor (see SliceOp).
-- Every slot touched first reaps its expired slices: their holds are released.
-- Returns, for each slice: {granted, held, spent, reserved} as "%.17g" strings, then holders
-- and 1 when the slice is live, 0 otherwise.

local take = ARGV[1] == "take"
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local LIVE, EXPIRED, DONE = 1, 2, 3

local function fmt(x)
  return string.format("%.17g", x)
end

local function parse(text)
  if not text then
    return {0, 0, 0, 0}
  end
  local record = {}
  for word in string.gmatch(text, "%S+") do
    record[#record + 1] = tonumber(word)
  end
  return record
end

local function keep(key, ms)  -- never shorten a key's TTL
  if redis.call("PTTL", key) < ms then
    redis.call("PEXPIRE", key, ms)
  end
end

local results = {}
for i = 1, #KEYS / 3 do
  local key, live, records = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local a = 3 + 8 * (i - 1)
  local id, limit, slot_ttl = ARGV[a + 1], tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local op_spent, op_given = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local want, least, floor = tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8])

  -- The slot, started from zero when it expired, as reserve.lua does.
  local expires = tonumber(redis.call("HGET", key, "expires"))
  if not expires or expires <= now then
    redis.call("HSET", key, "spent", 0, "reserved", 0)
    expires = 0
  end
  redis.call("HSET", key, "expires", fmt(math.max(expires, now + slot_ttl)))
  keep(key, slot_ttl * 1000)
  local slot = redis.call("HMGET", key, "spent", "reserved")
  local spent, reserved = tonumber(slot[1]), tonumber(slot[2])

  for _, name in ipairs(redis.call("ZRANGEBYSCORE", live, "-inf", now)) do
    local record = parse(redis.call("HGET", records, name))
    reserved = math.max(0, reserved - record[1])
    redis.call("HSET", records, name, fmt(0) .. " " .. fmt(record[2]) .. " " .. fmt(record[3]) .. " " .. EXPIRED)
    redis.call("ZREM", live, name)
  end
  local holders = redis.call("ZCARD", live)
  local granted, held, alive = 0, 0, false

  if id ~= "" then
    local record = parse(redis.call("HGET", records, id))
    local reported, given, state = record[2], record[3], record[4]
    held = record[1]
    if state ~= DONE then
      local spend = math.max(0, op_spent - reported)
      local back = math.max(0, op_given - given)
      spent = spent + spend
      if state == LIVE then
        local out = math.min(held, spend + back)
        held = held - out
        reserved = math.max(0, reserved - out)
      end
      if take and want > 0 and (state == 0 or state == LIVE) then
        if state == 0 then
          holders = holders + 1
        end
        local left = limit - spent - reserved
        local grant = math.min(want, left / (2 * holders))
        if left >= floor and grant >= least and grant > 0 then
          granted = grant
          held = held + grant
          reserved = reserved + grant
          state = LIVE
        elseif state == 0 then
          holders = holders - 1
        end
      end
      if not take then
        if state == LIVE then
          reserved = math.max(0, reserved - held)
          holders = holders - 1
        end
        held, state = 0, DONE
      end
      local text = fmt(held) .. " " .. fmt(math.max(reported, op_spent)) .. " " .. fmt(math.max(given, op_given))
      redis.call("HSET", records, id, text .. " " .. state)
      alive = state == LIVE
      if alive then
        redis.call("ZADD", live, fmt(now + ttl), id)
      else
        redis.call("ZREM", live, id)
        held = 0
      end
      keep(records, slot_ttl * 1000)
      keep(live, slot_ttl * 1000)
    else
      held = 0
    end
  end
  redis.call("HSET", key, "spent", fmt(spent), "reserved", fmt(reserved))
  results[i] = {fmt(granted), fmt(held), fmt(spent), fmt(reserved), holders, alive and 1 or 0}
end
return results
