-- Delete an entry and void a computation of it in flight (its store checks the fence).
-- KEYS: value, fence
-- Returns 1 when an entry was deleted.
if redis.call('exists', KEYS[2]) == 1 then
  redis.call('incr', KEYS[2])
end
return redis.call('del', KEYS[1])
