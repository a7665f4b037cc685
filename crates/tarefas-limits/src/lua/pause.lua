-- Shared pause: KEYS[1] the pause key, ARGV[1] the pause in milliseconds.
-- Sets the pause unless a pause at least as long already holds: a pause is
-- never shortened. A pause key without expiry (set by hand) is an indefinite
-- pause and is left alone.
-- Returns the pause left afterwards in milliseconds: 0 if none, -1 if indefinite.
local want = tonumber(ARGV[1])
local left = redis.call('PTTL', KEYS[1])
if left == -1 then
  return -1
end
if want > 0 and want > left then
  redis.call('SET', KEYS[1], '1', 'PX', want)
  return want
end
if left < 0 then
  return 0
end
return left
