-- Take a lock if it is free, in one round trip.
-- KEYS: lock, fence, waiters
-- ARGV: token, ttl_ms, register_waiter ('1'|'0')
-- Returns {1, fence} when taken, else {0, pttl of the holder's lock}.
local ttl = tonumber(ARGV[2])
local fence = take_lock(KEYS[1], KEYS[2], ARGV[1], ttl, math.max(FENCE_TTL_MS, 2 * ttl))
if fence then
  return {1, fence}
end
if ARGV[3] == '1' then
  register_waiter(KEYS[3], ttl + WAITER_GRACE_MS)
end
return {0, redis.call('pttl', KEYS[1])}
