-- Shared by the scripts: what each uses of this file is prepended to it (Lua scripts cannot
-- import). Definitions are separated by blank lines; a comment starts each.

-- Unclaimed wake-ups are dropped after this long (two of the longest blocking waits).
local SIGNAL_TTL_MS = 2000
-- A fence lives at least this long, and as long as its lock's TTL.
local SHORTEST_FENCE_MS = 1000

-- The server's clock in microseconds: where fences and generations (re)start, so that a
-- counter that expired and starts again is above every value it had before (there is at most
-- one start per microsecond, and the server clock does not go back).
local function clock_us()
  local now = redis.call('time')
  return tonumber(now[1]) * 1000000 + tonumber(now[2]) -- below 2^53: exact in a Lua number
end

-- A whole number as a string (a Lua number given to redis.call would be sent as %.14g).
local function digits(number)
  return string.format('%d', number)
end

-- The next fence of a lock: above the last one (while it is remembered) and never below the
-- server's clock in microseconds. So the counter may expire with its lock, be evicted, or be
-- older on a replica promoted by a failover, and fences still never go back (as long as
-- server clocks do not go back and agree within the time a failover takes).
local function next_fence(fence, ttl_ms)
  local value = math.max(tonumber(redis.call('get', fence) or '0') + 1, clock_us())
  redis.call('set', fence, digits(value), 'PX', math.max(ttl_ms, SHORTEST_FENCE_MS))
  return value
end

-- After a release, a fence has nothing left to guard but jitter of the server clock (the next
-- one starts from the clock): it expires soon, not with the released lock's full TTL.
local function retire_fence(fence)
  redis.call('pexpire', fence, SHORTEST_FENCE_MS)
end

local function now_ms()
  local now = redis.call('time')
  return tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
end

-- Whether a lock's value is a hand-over ('~' .. ticket) rather than an owner's token.
local function handed(owner)
  return string.sub(owner, 1, 1) == '~'
end

-- The lock's owner, or false when it is free: a hand-over whose ticket is still on the signal
-- list found no waiter blocked there, so nobody is about to claim it.
local function owner_of(lock)
  local owner = redis.call('get', lock)
  if owner and handed(owner) and redis.call('lpos', lock .. '#s', string.sub(owner, 2)) then
    return false
  end
  return owner
end

-- Take the lock if it is free; returns the new fence, or nil when another token holds it.
-- Taking it with the token that already holds it (a client re-sent a request whose reply was
-- lost) gives it its full TTL and returns the fence.
local function take_lock(lock, fence, token, ttl_ms)
  if redis.call('set', lock, token, 'NX', 'PX', ttl_ms) then
    return next_fence(fence, ttl_ms)
  end
  local owner = redis.call('get', lock)
  if owner and handed(owner) and redis.call('lrem', lock .. '#s', 0, string.sub(owner, 2)) > 0 then
    -- A hand-over nobody was blocked to take: its ticket is withdrawn, the lock is free.
    redis.call('set', lock, token, 'PX', ttl_ms)
    return next_fence(fence, ttl_ms)
  end
  if owner ~= token then
    return nil
  end
  redis.call('pexpire', lock, ttl_ms)
  local current = redis.call('get', fence)
  if not current then
    return next_fence(fence, ttl_ms)
  end
  redis.call('pexpire', fence, math.max(ttl_ms, SHORTEST_FENCE_MS))
  return tonumber(current)
end

local function register_waiter(waiters, waiters_ttl_ms)
  redis.call('incr', waiters)
  redis.call('pexpire', waiters, waiters_ttl_ms)
end

-- Hand the lock to the waiter blocked longest on its signal list: Redis serves clients blocked
-- on one list first come, first served, and drops a client from that queue the moment its
-- connection closes, so a waiter killed in line is skipped at once. The lock holds '~' and the
-- ticket (its next fence) until that waiter claims it with the ticket; a ticket nobody was
-- blocked to take stays on the list, and the lock is then free for anyone.
local function hand_over(lock, fence, claim_ms)
  local ticket = digits(next_fence(fence, claim_ms))
  local signal = lock .. '#s'
  redis.call('set', lock, '~' .. ticket, 'PX', claim_ms)
  redis.call('del', signal)
  redis.call('rpush', signal, ticket)
  redis.call('pexpire', signal, claim_ms)
end

-- Wake one or all registered waiters of a lock just freed.
local function wake_waiters(signal, waiters, wake, signal_ttl_ms)
  local waiting = tonumber(redis.call('get', waiters) or '0')
  if waiting > 0 then
    local count = waiting
    if wake == 'one' then
      count = 1
    end
    for _ = 1, count do
      redis.call('rpush', signal, '1')
    end
    redis.call('pexpire', signal, signal_ttl_ms)
    if count >= waiting then
      redis.call('del', waiters)
    else
      redis.call('decrby', waiters, count)
    end
  end
end

-- Free a lock its caller holds (checked already), waking one or all registered waiters. DEL
-- is allowed at maxmemory, the wake-up's writes are not: a server that is full still frees
-- the lock (its waiters then see it at their next attempt, within LONGEST_WAIT).
local function free_lock(lock, signal, waiters, wake, signal_ttl_ms)
  redis.call('del', lock)
  pcall(wake_waiters, signal, waiters, wake, signal_ttl_ms)
end

-- Release the lock if token holds it, waking one or all registered waiters; returns 1 or 0.
local function release_lock(lock, signal, waiters, token, wake, signal_ttl_ms)
  if redis.call('get', lock) ~= token then
    return 0
  end
  free_lock(lock, signal, waiters, wake, signal_ttl_ms)
  return 1
end

-- The generation an entry is stored under (KEYS: value, generation, lock, then its tags'
-- versions): its function's generation, plus its tags' versions, modulo 2^52 (exact in a Lua
-- number; Python adds the same: records.sum_versions). Each only grows, so the sum moves
-- whenever any of them does. A missing one starts at the clock, kept create_ms (0: no expiry;
-- nil: not made, and the entry has no generation).
local function entry_generation(create_ms)
  local total = 0
  for i = 2, #KEYS do
    if i ~= 3 then
      local version = redis.call('get', KEYS[i])
      if not version then
        if not create_ms then
          return nil
        end
        version = digits(clock_us())
        if create_ms == 0 then
          redis.call('set', KEYS[i], version)
        else
          redis.call('set', KEYS[i], version, 'PX', create_ms)
        end
      end
      if #KEYS == 3 then
        return version
      end
      total = (total + tonumber(version)) % 4503599627370496
    end
  end
  return digits(total)
end

-- Keep an entry's generation and tag versions (KEYS[2], KEYS[4]...) at least as long as the
-- entry (ttl_ms; 0: no expiry), with room to spare, so that most stores leave them alone
-- (each change of one is an invalidation every process with local copies acts on).
local function keep_generations(ttl_ms)
  for i = 2, #KEYS do
    if i ~= 3 then
      if ttl_ms == 0 then
        redis.call('persist', KEYS[i])
      else
        local left = redis.call('pttl', KEYS[i])
        if left >= 0 and left < ttl_ms then
          redis.call('pexpire', KEYS[i], 2 * ttl_ms)
        end
      end
    end
  end
end
