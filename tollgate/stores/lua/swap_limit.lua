-- Replace a standing limit only if its document is the one expected (compare and swap), bumping
-- the version when swapped: 1 when swapped, else 0.
-- Called by tollgate/stores/redis.py; mirrors MemoryStore.swap_limit in tollgate/stores/memory.py.
--
-- KEYS: the limits hash, the version counter (as in limit.lua).
-- ARGV: the id; "1" and the expected document, or "0" and "" (expected: none);
--       "1" and the new document, or "0" and "" (delete it).

local current = redis.call("HGET", KEYS[1], ARGV[1])
if ARGV[2] == "1" then
  if current ~= ARGV[3] then
    return 0
  end
elseif current then
  return 0
end
if ARGV[4] == "1" then
  redis.call("HSET", KEYS[1], ARGV[1], ARGV[5])
else
  redis.call("HDEL", KEYS[1], ARGV[1])
end
redis.call("INCR", KEYS[2])
return 1
