-- Take a lock, first come, first served, in one round trip.
-- KEYS: lock, fence, line, deadlines
-- ARGV: token, ttl_ms, wait ('1': join the line when the lock is not ours), claim_ms
-- Returns the fence (> 0) when this token holds the lock, else -1 - ms to wait (<= -1).
-- The lock goes to the first live waiter in line: a free lock is taken only by someone who is
-- first (or when nobody waits), and a release hands it over directly (lock_release.lua), so a
-- holder that releases and asks again queues behind those already waiting.
local ttl = tonumber(ARGV[2])
local token = ARGV[1]
local head = first_in_line(KEYS[3], KEYS[4])
if head == nil or head == token then
  local fence = take_lock(KEYS[1], KEYS[2], token, ttl)
  if fence then
    if head == token then
      redis.call('lpop', KEYS[3])
      redis.call('hdel', KEYS[4], token)
    end
    return fence
  end
elseif redis.call('get', KEYS[1]) == token then -- handed over while this waiter slept
  redis.call('pexpire', KEYS[1], ttl)
  return tonumber(redis.call('get', KEYS[2]))
end
if ARGV[3] == '1' then
  local claim = tonumber(ARGV[4])
  local deadline = now_ms() + claim
  if redis.call('hset', KEYS[4], token, deadline) == 1 then
    redis.call('rpush', KEYS[3], token)
  end
  redis.call('pexpire', KEYS[3], claim + WAITER_GRACE_MS)
  redis.call('pexpire', KEYS[4], claim + WAITER_GRACE_MS)
end
return -1 - math.max(redis.call('pttl', KEYS[1]), 0)
