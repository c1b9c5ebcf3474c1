-- Store a cache-aside entry and release its lock, waking every waiter.
-- KEYS: value, generation, lock (companions lock#f, lock#w, lock#s), then the entry's tags'
--       versions
-- ARGV: payload, fresh_ms (0 = never stale), ttl_ms (0 = no expiry), generation ('' = current),
--       token ('' = no lock held), fence
-- Returns 1 when stored, 0 when skipped because the generation or the entry's fence moved on.
-- The generation (and each tag's version) is kept at least as long as the entry, so an entry
-- never outlives it.
local lock = KEYS[3]
local fence, waiters, signal = lock .. '#f', lock .. '#w', lock .. '#s'
local ttl = tonumber(ARGV[3])
local gen = ARGV[4]
local current
if gen == '' then
  current = entry_generation(ttl)
  gen = current
else
  current = entry_generation(nil)
end
local stored = 0
if current == gen and (ARGV[5] == '' or redis.call('get', fence) == ARGV[6]) then
  local now = now_ms()
  local stale_after = 0
  if ARGV[2] ~= '0' then
    stale_after = now + tonumber(ARGV[2])
  end
  local expires_at = 0
  if ttl ~= 0 then
    expires_at = now + ttl
  end
  -- The envelope names its key (a digest's first 8 hex digits): a reader can tell it from the
  -- reply to another request.
  local envelope = 'ct3|' .. string.sub(redis.sha1hex(KEYS[1]), 1, 8) .. '|' .. gen .. '|'
    .. string.format('%d', stale_after) .. '|' .. string.format('%d', expires_at) .. '|' .. ARGV[1]
  if ttl == 0 then
    redis.call('set', KEYS[1], envelope)
  else
    redis.call('set', KEYS[1], envelope, 'PX', ttl)
  end
  keep_generations(ttl)
  stored = 1
end
if ARGV[5] ~= '' and release_lock(lock, signal, waiters, ARGV[5], 'all', SIGNAL_TTL_MS) == 1 then
  retire_fence(fence)
end
return stored
