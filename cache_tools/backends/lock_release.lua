-- Release a lock held with this token and wake its waiters, in one round trip.
-- KEYS: lock, signal, waiters
-- ARGV: token, wake ('one'|'all'), signal_ttl_ms
-- Returns 1 when released, 0 when the lock was not ours (expired or taken over).
return release_lock(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])
