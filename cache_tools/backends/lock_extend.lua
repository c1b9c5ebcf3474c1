-- Set a new TTL on a lock only if this token still holds it.
-- KEYS: lock
-- ARGV: token, ttl_ms
-- Returns 1 when extended, 0 when the lock is no longer ours.
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
