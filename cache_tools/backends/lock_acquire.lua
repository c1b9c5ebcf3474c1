-- Take a lock, or claim it with the ticket of a hand-over, in one round trip.
-- KEYS: lock (its companions are named from it: lock#f, lock#s, lock#q)
-- ARGV: token, ttl_ms, wait ('1': note this token among the lock's waiters), ticket ('' or the
--       ticket this waiter popped from lock#s), seen_ms (how long a waiter counts as waiting),
--       waited ('1': this token was noted as a waiter before)
-- Returns the fence (> 0) when this token holds the lock, else -1 - ms to wait (<= -1).
-- A released lock goes to the waiter Redis has blocked longest on lock#s (lock_release.lua):
-- newcomers find it handed over and wait, so a holder that releases and asks again queues
-- behind those already waiting. Nobody else can claim a ticket: only one waiter pops it.
local lock, token = KEYS[1], ARGV[1]
local fence_key, waiting = lock .. '#f', lock .. '#q'
local ttl = tonumber(ARGV[2])
local ticket = ARGV[4]
local fence = nil
if ticket ~= '' and redis.call('get', lock) == '~' .. ticket then
  redis.call('set', lock, token, 'PX', ttl)
  redis.call('pexpire', fence_key, math.max(ttl, SHORTEST_FENCE_MS))
  fence = tonumber(redis.call('get', fence_key) or ticket)
else
  fence = take_lock(lock, fence_key, token, ttl)
end
if fence then
  if ARGV[6] == '1' then
    redis.call('zrem', waiting, token)
  end
  return fence
end
if ARGV[3] == '1' then
  local seen = tonumber(ARGV[5])
  redis.call('zadd', waiting, now_ms() + seen, token)
  redis.call('pexpire', waiting, seen)
end
return -1 - math.max(redis.call('pttl', lock), 0)
