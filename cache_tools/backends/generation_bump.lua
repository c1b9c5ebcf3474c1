-- Invalidate every entry stored under a generation, in O(1).
-- KEYS: generation
-- Returns the new generation, or 0 when there was none: then no entry is valid anyway (an
-- entry never outlives its generation, and a new one starts above every earlier value).
if redis.call('exists', KEYS[1]) == 1 then
  return redis.call('incr', KEYS[1])
end
return 0
