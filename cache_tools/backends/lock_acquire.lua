-- Take a lock if it is free, in one round trip.
-- KEYS: lock, fence, waiters
-- ARGV: token, ttl_ms, register_waiter ('1'|'0')
-- Returns the new fence (> 0) when taken, else -1 - the holder's remaining ms (<= -1).
local ttl = tonumber(ARGV[2])
local fence = take_lock(KEYS[1], KEYS[2], ARGV[1], ttl, math.max(FENCE_TTL_MS, 2 * ttl))
if fence then
  return fence
end
if ARGV[3] == '1' then
  register_waiter(KEYS[3], ttl + WAITER_GRACE_MS)
end
return -1 - math.max(redis.call('pttl', KEYS[1]), 0)
