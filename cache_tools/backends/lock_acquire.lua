-- Take a lock if it is free, in one round trip.
-- KEYS: lock, fence, waiters
-- ARGV: token, ttl_ms, fence_ttl_ms, register_waiter ('1'|'0'), waiters_ttl_ms
-- Returns {1, fence} when taken, else {0, pttl of the holder's lock}.
local fence = take_lock(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
if fence then
  return {1, fence}
end
if ARGV[4] == '1' then
  register_waiter(KEYS[3], ARGV[5])
end
return {0, redis.call('pttl', KEYS[1])}
