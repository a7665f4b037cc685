-- Idempotency key: KEYS[1]; ARGV[1] the mark it must hold ('inflight:<from>'), ARGV[2] the
-- mark to set instead ('inflight:<to>'), ARGV[3] the TTL in milliseconds.
-- Compare and set: hands the mark over only while the key still holds ARGV[1].
-- Returns 1 if handed over, 0 otherwise (the key holds something else, or nothing).
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
