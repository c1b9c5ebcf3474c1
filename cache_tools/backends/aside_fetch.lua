-- Read a cache-aside entry and, on a miss or stale hit, take the entry's lock.
-- KEYS: value, generation, lock (companions lock#f, lock#w), then the entry's tags' versions
-- ARGV: token ('' = do not lock), lock_ttl_ms, recompute ('1': take the lock on a fresh hit too,
--       or wait for it as on a miss: refresh()), waiter_grace_ms (how long a waiter's
--       registration outlives the lock: two of the adapter's longest blocking waits)
-- Returns {state, envelope or nil, number, generation}:
--   {1, envelope, 0, gen}        fresh hit (with recompute: fence > 0, this caller must compute)
--   {2, envelope, fence, gen}    stale hit; fence > 0 when this caller must refresh
--   {0, nil, fence, gen}         miss; fence > 0 when this caller must compute
--   {-1, nil, pttl, gen}         miss while another caller computes (registered as a waiter)
--   {-2, nil, 0, gen}            miss whose last computation could not be stored (lock#n): compute
--                                without the lock, as every other caller does meanwhile
-- An envelope is 'ct3|<key tag>|<generation>|<stale after>|<expires at>|<payload>' (times in ms
-- since the epoch on the server's clock; 0 never).
-- gen is the function's generation, or with tags its sum with their versions
-- (entry_generation). A missing one starts at the server clock, so it never matches an older
-- entry; it lives until the store that follows extends it to the entry's lifetime.
local lock, fence_key, waiters = KEYS[3], KEYS[3] .. '#f', KEYS[3] .. '#w'
local lock_ttl = tonumber(ARGV[2])
local gen = entry_generation(2 * lock_ttl + 10000)
local envelope = redis.call('get', KEYS[1])
local state = 0
if envelope then
  local entry_gen, stale_after = string.match(envelope, '^ct3|%x+|(%d+)|(%d+)|')
  if entry_gen == gen then
    state = 1
    if stale_after ~= '0' and now_ms() >= tonumber(stale_after) then
      state = 2
    end
  end
end
local recompute = ARGV[3] == '1'
if state == 1 and not recompute then
  return {1, envelope, 0, gen}
end
local fence = 0
if ARGV[1] ~= '' and state == 0 and redis.call('exists', lock .. '#n') == 1 then
  return {-2, false, 0, gen}
end
if ARGV[1] ~= '' then
  fence = take_lock(lock, fence_key, ARGV[1], lock_ttl)
  if not fence then
    fence = 0
    if state == 0 or recompute then
      register_waiter(waiters, lock_ttl + tonumber(ARGV[4]))
      return {-1, false, redis.call('pttl', lock), gen}
    end
  end
end
if state ~= 0 then
  return {state, envelope, fence, gen}
end
return {0, false, fence, gen}
