-- Release a lock held with this token, in one round trip: hand it to the first live waiter in
-- line (locks), or wake registered waiters (cache-aside entry locks).
-- KEYS: lock, signal, waiters, fence, line, deadlines
-- ARGV: token, wake ('one' | 'all'), claim_ms
-- Returns 1 when released, 0 when the lock was not this token's (expired or taken over); a
-- token that is not the owner also leaves the line (a waiter giving up).
local token = ARGV[1]
if redis.call('get', KEYS[1]) ~= token then
  if redis.call('lrem', KEYS[5], 0, token) > 0 then
    redis.call('hdel', KEYS[6], token)
  end
  return 0
end
if hand_over(KEYS[1], KEYS[4], KEYS[5], KEYS[6], tonumber(ARGV[3])) then
  return 1
end
local released = release_lock(KEYS[1], KEYS[2], KEYS[3], token, ARGV[2], SIGNAL_TTL_MS)
if released == 1 then
  retire_fence(KEYS[4])
end
return released
