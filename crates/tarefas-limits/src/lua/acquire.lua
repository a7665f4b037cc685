-- GCRA over several keys at once, all or nothing, with shared pauses.
--
-- For every limit i (1-based):
--   KEYS[2i-1]  TAT key: the theoretical arrival time, in microseconds of the Redis clock
--   KEYS[2i]    pause key: exists while a pause (e.g. a 429's Retry-After) holds
--   ARGV[2i-1]  emission interval T in whole microseconds (>= 1)
--   ARGV[2i]    burst b (>= 1)
--
-- Returns {granted, wait_us, now_us}:
--   {1, 0, now}    admitted on every key; each key's TAT has advanced by its T
--   {0, wait, now} admitted on none and nothing was written; `wait` is how long
--                  (microseconds) until every key would admit, or the longest pause left
--
-- Time comes from the Redis server (TIME), so the workers' clocks do not matter.
-- Microsecond timestamps (~1.7e15) are exact in Lua's doubles (< 2^53).

-- Redis < 5 needs effects replication to write after TIME; a no-op from 5 on, gone in 7.
if redis.replicate_commands then
  pcall(redis.replicate_commands)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS / 2

-- 1. Pauses: while any key is paused, refuse and consume nothing.
local pause_us = 0
for i = 1, n do
  local ms = redis.call('PTTL', KEYS[2 * i])
  local us = 0
  if ms == -1 then
    -- a pause without expiry (set by hand): hold until someone deletes it
    us = 1000000
  elseif ms >= 0 then
    us = math.max(ms, 1) * 1000
  end
  if us > pause_us then
    pause_us = us
  end
end
if pause_us > 0 then
  return {0, pause_us, now}
end

-- 2. GCRA on every key; admit only if every key admits.
local wait = 0
local new_tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i - 1])
  local burst = tonumber(ARGV[2 * i])
  local stored = redis.call('GET', KEYS[2 * i - 1])
  local tat = now
  if stored then
    tat = tonumber(stored)
    if tat == nil then
      return redis.error_reply('tarefas-limits: TAT key ' .. KEYS[2 * i - 1] .. ' holds a non-number')
    end
    if tat < now then
      tat = now
    end
  end
  local new_tat = tat + interval
  local allow_at = new_tat - burst * interval
  if allow_at > now then
    if allow_at - now > wait then
      wait = allow_at - now
    end
  end
  new_tats[i] = new_tat
end
if wait > 0 then
  return {0, wait, now}
end

-- Admitted: store each new TAT. A key expires once its TAT is in the past,
-- which is exactly when an absent key means the same thing (a full burst).
for i = 1, n do
  local ttl_ms = math.ceil((new_tats[i] - now) / 1000)
  redis.call('SET', KEYS[2 * i - 1], string.format('%.0f', new_tats[i]), 'PX', ttl_ms)
end
return {1, 0, now}
