-- Add to the counts of locks and note their names in the registry of locks, keeping at most
-- the `keep` most recently used names, none older than `max_age` seconds; a name's counts go
-- with it. Lock names can be as many as the objects they guard: this record stays bounded.
-- KEYS: counts (a hash of '<field>:<name>' -> count), registry (a sorted set of names by when)
-- ARGV: keep, max_age (seconds), fields (comma-separated), then name, field, amount, ...
--       (and, as for every script, the request's nonce last: see redis.py's _Script)
local counts, registry = KEYS[1], KEYS[2]
local keep, max_age = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = redis.call('time')
local seconds = tonumber(now[1]) + tonumber(now[2]) / 1000000
for i = 4, #ARGV - 1, 3 do
  redis.call('hincrby', counts, ARGV[i + 1] .. ':' .. ARGV[i], ARGV[i + 2])
  redis.call('zadd', registry, seconds, ARGV[i])
end
local fields = {}
for field in string.gmatch(ARGV[3], '[^,]+') do
  fields[#fields + 1] = field
end
local gone = redis.call('zrangebyscore', registry, '-inf', '(' .. (seconds - max_age))
local extra = redis.call('zcard', registry) - #gone - keep
if extra > 0 then
  for _, name in ipairs(redis.call('zrange', registry, #gone, #gone + extra - 1)) do
    gone[#gone + 1] = name
  end
end
for _, name in ipairs(gone) do
  redis.call('zrem', registry, name)
  for _, field in ipairs(fields) do
    redis.call('hdel', counts, field .. ':' .. name)
  end
end
local ttl = math.floor(max_age * 1000)
redis.call('pexpire', counts, ttl)
redis.call('pexpire', registry, ttl)
return #gone
