-- Release a lock held with this token, in one round trip: hand it to the waiter blocked
-- longest on lock#s (locks, when a waiter asked lately), or wake registered waiters
-- (cache-aside entry locks); else just free it.
-- KEYS: lock (companions lock#s, lock#w, lock#f, lock#n)
-- ARGV: token, wake ('hand' | 'one' | 'all'), claim_ms (how long a hand-over waits for its claim),
--       uncacheable_ms (> 0: the result could not be stored; for that long, callers compute
--       without waiting for each other: aside_fetch.lua)
-- Returns 1 when released, 0 when the lock was not this token's (expired or taken over).
local lock = KEYS[1]
local signal, waiters, fence = lock .. '#s', lock .. '#w', lock .. '#f'
if redis.call('get', lock) ~= ARGV[1] then
  return 0
end
-- Someone asked for it lately (each waiter notes itself at every attempt): its turn. At
-- maxmemory the hand-over cannot be written (nothing of it is): the lock is freed instead.
if ARGV[2] == 'hand' and redis.call('exists', lock .. '#q') == 1
    and pcall(hand_over, lock, fence, tonumber(ARGV[3])) then
  return 1
end
free_lock(lock, signal, waiters, ARGV[2], SIGNAL_TTL_MS)
retire_fence(fence)
local uncacheable = tonumber(ARGV[4] or '0')
if uncacheable > 0 then
  pcall(redis.call, 'set', lock .. '#n', '1', 'PX', uncacheable)
end
return 1
