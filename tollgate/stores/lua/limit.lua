-- Put (ARGV = {id, document}) or delete (ARGV = {id}) a standing limit, bumping the version
-- when something changed, in one step so readers never see a new document with an old version.
-- Called by tollgate/stores/redis.py.
--
-- KEYS: the limits hash, the version counter. Returns 1 if something changed, else 0.

if #ARGV == 2 then
  redis.call("HSET", KEYS[1], ARGV[1], ARGV[2])
elseif redis.call("HDEL", KEYS[1], ARGV[1]) == 0 then
  return 0
end
redis.call("INCR", KEYS[2])
return 1
