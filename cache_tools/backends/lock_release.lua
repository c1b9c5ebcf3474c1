-- Release a lock held with this token, in one round trip: hand it to the first live waiter in
-- line (locks), or wake registered waiters (cache-aside entry locks).
-- KEYS: lock (companions lock#s, lock#w, lock#f, lock#q, lock#d)
-- ARGV: token, wake ('one' | 'all'), claim_ms
-- Returns 1 when released, 0 when the lock was not this token's (expired or taken over); a
-- token that is not the owner also leaves the line (a waiter giving up).
local lock = KEYS[1]
local signal, waiters, fence = lock .. '#s', lock .. '#w', lock .. '#f'
local line, deadlines = lock .. '#q', lock .. '#d'
local token = ARGV[1]
if redis.call('get', lock) ~= token then
  if redis.call('lrem', line, 0, token) > 0 then
    redis.call('hdel', deadlines, token)
  end
  return 0
end
if hand_over(lock, fence, line, deadlines, tonumber(ARGV[3])) then
  return 1
end
free_lock(lock, signal, waiters, ARGV[2], SIGNAL_TTL_MS)
retire_fence(fence)
return 1
