-- Idempotency key: KEYS[1]; ARGV[1] the `inflight` value to remove ('inflight', or
-- 'inflight:<attempt>' for one attempt's mark). Deletes the key only if it still holds
-- exactly that value: 'done' is never removed, nor another attempt's mark.
-- Returns 1 if deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
