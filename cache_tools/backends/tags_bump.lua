-- Invalidate every entry carrying one of these tags, in O(1) per tag.
-- KEYS: the tags' versions
-- Returns how many existed (a missing one needs nothing: it starts again above every value it
-- had, which no entry carries).
local bumped = 0
for i = 1, #KEYS do
  if redis.call('exists', KEYS[i]) == 1 then
    redis.call('incr', KEYS[i])
    bumped = bumped + 1
  end
end
return bumped
