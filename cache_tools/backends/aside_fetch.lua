-- Read a cache-aside entry, count the hit, and on a miss or stale hit take the entry's lock.
-- KEYS: value, generation, stats, lock, fence, waiters
-- ARGV: token ('' = do not lock), lock_ttl_ms
-- Returns {state, envelope or nil, number, generation}:
--   {1, envelope, 0, gen}        fresh hit
--   {2, envelope, fence, gen}    stale hit; fence > 0 when this caller must refresh
--   {0, nil, fence, gen}         miss; fence > 0 when this caller must compute
--   {-1, nil, pttl, gen}         miss while another caller computes (registered as a waiter)
-- An envelope is 'ct1|<generation>|<stale after, ms since epoch; 0 never>|<payload>'.
local gen = redis.call('get', KEYS[2]) or '0'
local envelope = redis.call('get', KEYS[1])
local state = 0
if envelope then
  local entry_gen, stale_after = string.match(envelope, '^ct1|(%d+)|(%d+)|')
  if entry_gen == gen then
    state = 1
    if stale_after ~= '0' and now_ms() >= tonumber(stale_after) then
      state = 2
    end
  end
end
if state == 1 then
  redis.call('hincrby', KEYS[3], 'hits', 1)
  return {1, envelope, 0, gen}
end
local fence = 0
if ARGV[1] ~= '' then
  local lock_ttl = tonumber(ARGV[2])
  fence = take_lock(KEYS[4], KEYS[5], ARGV[1], lock_ttl, math.max(FENCE_TTL_MS, 2 * lock_ttl))
  if not fence then
    fence = 0
    if state == 0 then
      register_waiter(KEYS[6], lock_ttl + WAITER_GRACE_MS)
      return {-1, false, redis.call('pttl', KEYS[4]), gen}
    end
  end
end
if state == 2 then
  redis.call('hincrby', KEYS[3], 'stale_hits', 1)
  return {2, envelope, fence, gen}
end
return {0, false, fence, gen}
