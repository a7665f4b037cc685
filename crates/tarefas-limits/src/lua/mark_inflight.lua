-- Idempotency key: KEYS[1]; ARGV[1] the TTL in milliseconds.
-- Sets 'inflight' only if the key is absent (SET NX PX) and in the same step
-- returns what it already held, so the caller knows whose the record is.
-- Returns false (nil) when newly set, else the value it already held.
local held = redis.call('GET', KEYS[1])
if held then
  return held
end
redis.call('SET', KEYS[1], 'inflight', 'PX', ARGV[1])
return false
