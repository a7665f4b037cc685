-- GCRA over several keys at once, all or nothing, with shared pauses; optionally marks
-- the idempotency key of every admitted call in the same atomic step.
--
--   ARGV[1]       n, the number of limits
--   ARGV[2]       how many calls are asked for at once (>= 1)
--   ARGV[3]       the TTL in milliseconds of the idempotency keys to mark, 0 for none
-- and for every limit i (1-based):
--   KEYS[2i-1]    TAT key: the theoretical arrival time, in microseconds of the Redis clock
--   KEYS[2i]      pause key: exists while a pause (e.g. a 429's Retry-After) holds
--   ARGV[2i+2]    emission interval T in whole microseconds (>= 1)
--   ARGV[2i+3]    burst b (>= 1)
-- and, when marking, one idempotency key per call asked for:
--   KEYS[2n+j]    the key of the j-th call (j = 1..asked)
--   ARGV[2n+3+j]  the value to mark it with: 'inflight', or 'inflight:<attempt>' for a
--                 mark that says which attempt set it (a key already holding that same
--                 attempt's mark, set by an earlier ask of the same attempt whose reply
--                 was lost, is that attempt's: marked again, answered '')
--
-- Returns {granted, wait_us, now_us, held_1, ..., held_g}:
--   {g, w, now, ...} g >= 1 calls admitted on every key (as many as asked, or as many as
--                  every key admits now, which is at most its burst); each key's TAT has
--                  advanced by g * T. Admitting g calls at once is the same as admitting
--                  them one after the other at the same instant, so the guarantee of
--                  single calls holds. `w` is how long until the next call would be
--                  admitted (0 when it would be now). When marking, the keys of the
--                  first g calls were each set 'inflight' unless present (like SET NX
--                  PX), and held_j says what the j-th held: '' when newly set.
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
local n = tonumber(ARGV[1])
local asked = tonumber(ARGV[2])
local idem_ttl = tonumber(ARGV[3])

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

-- 2. GCRA on every key; admit only as many calls as every key admits.
--    Key i admits g calls now when tat_i + g*T_i - b_i*T_i <= now, that is
--    g <= b_i + (now - tat_i) / T_i (with tat_i >= now: at most b_i).
local granted = asked
local tats = {}
for i = 1, n do
  local interval = tonumber(ARGV[2 * i + 2])
  local burst = tonumber(ARGV[2 * i + 3])
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
  tats[i] = tat
  local admits = burst - math.ceil((tat - now) / interval)
  if admits < granted then
    granted = admits
  end
end

-- How long until the call after `granted` would be admitted on every key.
local function wait_after(g)
  local w = 0
  for i = 1, n do
    local interval = tonumber(ARGV[2 * i + 2])
    local burst = tonumber(ARGV[2 * i + 3])
    local allow_at = tats[i] + (g + 1) * interval - burst * interval
    if allow_at - now > w then
      w = allow_at - now
    end
  end
  return w
end

if granted < 1 then
  return {0, math.max(wait_after(0), 1), now}
end

-- Admitted: store each new TAT. A key expires once its TAT is in the past,
-- which is exactly when an absent key means the same thing (a full burst).
for i = 1, n do
  local interval = tonumber(ARGV[2 * i + 2])
  local new_tat = tats[i] + granted * interval
  local ttl_ms = math.ceil((new_tat - now) / 1000)
  redis.call('SET', KEYS[2 * i - 1], string.format('%.0f', new_tat), 'PX', ttl_ms)
end
local out = {granted, wait_after(granted), now}
-- Marking: the keys of the admitted calls, in order.
if idem_ttl > 0 then
  for j = 1, granted do
    local key = KEYS[2 * n + j]
    local value = ARGV[2 * n + 3 + j]
    local held = redis.call('GET', key)
    if held and (held ~= value or value == 'inflight') then
      out[3 + j] = held
    else
      redis.call('SET', key, value, 'PX', idem_ttl)
      out[3 + j] = ''
    end
  end
end
return out
