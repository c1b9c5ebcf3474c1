-- The token that holds a lock, or nil when it is free (a hand-over nobody was blocked to take
-- is free; one a waiter popped is reported as such, '~' and its ticket, until it is claimed).
-- KEYS: lock (companion lock#s)
return owner_of(KEYS[1])
