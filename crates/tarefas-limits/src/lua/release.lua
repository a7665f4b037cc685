-- Idempotency key: KEYS[1]. Deletes it only if it still holds 'inflight';
-- 'done' is never removed. Returns 1 if deleted, 0 otherwise.
if redis.call('GET', KEYS[1]) == 'inflight' then
  return redis.call('DEL', KEYS[1])
end
return 0
