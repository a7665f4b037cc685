-- Idempotency keys of many records: KEYS[1..n]; ARGV[1] the TTL in milliseconds.
-- For each key, like mark_inflight.lua: sets 'inflight' only if the key is absent
-- (SET NX PX) and otherwise says what it already held. All keys in one atomic step.
-- Returns one string per key, in order: '' when newly set, else the value it held.
local out = {}
for i = 1, #KEYS do
  local held = redis.call('GET', KEYS[i])
  if held then
    out[i] = held
  else
    redis.call('SET', KEYS[i], 'inflight', 'PX', ARGV[1])
    out[i] = ''
  end
end
return out
