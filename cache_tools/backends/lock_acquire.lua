-- Take a lock, first come, first served, in one round trip.
-- KEYS: lock (its companions are named from it: lock#f, lock#q, lock#d)
-- ARGV: token, ttl_ms, wait ('1': join the line when the lock is not ours), claim_ms
-- Returns the fence (> 0) when this token holds the lock, else -1 - ms to wait (<= -1).
-- The lock goes to the first live waiter in line: a free lock is taken only by someone who is
-- first (or when nobody waits), and a release hands it over directly (lock_release.lua), so a
-- holder that releases and asks again queues behind those already waiting.
local lock = KEYS[1]
local fence_key, line, deadlines = lock .. '#f', lock .. '#q', lock .. '#d'
local ttl = tonumber(ARGV[2])
local token = ARGV[1]
local head = first_in_line(line, deadlines)
if head == nil or head == token then
  local fence = take_lock(lock, fence_key, token, ttl)
  if fence then
    if head == token then
      redis.call('lpop', line)
      redis.call('hdel', deadlines, token)
    end
    return fence
  end
elseif redis.call('get', lock) == token then -- handed over while this waiter slept
  redis.call('pexpire', lock, ttl)
  return tonumber(redis.call('get', fence_key))
end
if ARGV[3] == '1' then
  local claim = tonumber(ARGV[4])
  local deadline = now_ms() + claim
  if redis.call('hset', deadlines, token, deadline) == 1 then
    redis.call('rpush', line, token)
  end
  redis.call('pexpire', line, claim + WAITER_GRACE_MS)
  redis.call('pexpire', deadlines, claim + WAITER_GRACE_MS)
end
return -1 - math.max(redis.call('pttl', lock), 0)
