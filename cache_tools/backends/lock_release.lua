-- Release a lock held with this token and wake its waiters, in one round trip.
-- KEYS: lock, signal, waiters
-- ARGV: token [, 'all' to wake every waiter instead of one]
-- Returns 1 when released, 0 when the lock was not ours (expired or taken over).
return release_lock(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2] or 'one', SIGNAL_TTL_MS)
