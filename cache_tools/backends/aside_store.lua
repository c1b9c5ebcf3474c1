-- Store a cache-aside entry, count, and release its lock waking every waiter.
-- KEYS: value, generation, stats, lock, fence, waiters, signal
-- ARGV: payload, fresh_ms (0 = never stale), ttl_ms (0 = no expiry), generation ('' = current),
--       token ('' = no lock held), fence, then (stats field, increment) pairs
-- Returns 1 when stored, 0 when skipped because the generation or the entry's fence moved on.
local stored = 0
local current_gen = redis.call('get', KEYS[2]) or '0'
local gen = ARGV[4]
if gen == '' then
  gen = current_gen
end
if current_gen == gen and (ARGV[5] == '' or redis.call('get', KEYS[5]) == ARGV[6]) then
  local stale_after = 0
  if ARGV[2] ~= '0' then
    stale_after = now_ms() + tonumber(ARGV[2])
  end
  local envelope = 'ct1|' .. gen .. '|' .. string.format('%d', stale_after) .. '|' .. ARGV[1]
  if ARGV[3] ~= '0' then
    redis.call('set', KEYS[1], envelope, 'PX', ARGV[3])
  else
    redis.call('set', KEYS[1], envelope)
  end
  stored = 1
end
for i = 7, #ARGV, 2 do
  redis.call('hincrby', KEYS[3], ARGV[i], ARGV[i + 1])
end
if ARGV[5] ~= '' then
  release_lock(KEYS[4], KEYS[7], KEYS[6], ARGV[5], 'all', SIGNAL_TTL_MS)
end
return stored
