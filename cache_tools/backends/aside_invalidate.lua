-- Delete an entry and void a computation of it in flight (its store checks the fence).
-- KEYS: value, lock (its fence is lock#f)
-- Returns 1 when an entry was deleted.
local fence = KEYS[2] .. '#f'
if redis.call('exists', fence) == 1 then
  redis.call('incr', fence)
end
return redis.call('del', KEYS[1])
