/**
 * GCRA as a Lua function, the same computation as gcra.ts, for the scripts that run it atomically in
 * Redis with the server's own clock (TIME), so the instances' clocks do not matter. Returns {allowed 0|1,
 * remaining, resetMs, retryAfterMs}. The stored value is the TAT in integer microseconds and expires by
 * itself when it is reached (PX), so idle keys vanish.
 */
export const gcraFunctionLua = `
local function gcra(key, limit, window_ms, cost, mode, now)
  local interval = math.ceil(window_ms * 1000 / limit)
  local tolerance = interval * limit
  local stored = tonumber(redis.call('GET', key))
  local tat = now
  if stored ~= nil and stored > now then tat = stored end
  local allowed = 0
  local nxt = tat
  local retry = 0
  if mode == 'charge' then
    nxt = tat + math.ceil(cost * interval)
    if nxt + interval - now <= tolerance then allowed = 1 else retry = nxt + interval - now - tolerance end
  else
    local candidate = tat + math.ceil(math.max(cost, 1) * interval)
    if candidate - now <= tolerance then
      allowed = 1
      nxt = tat + math.ceil(cost * interval)
    else
      retry = candidate - now - tolerance
    end
  end
  if nxt > now and nxt ~= stored then
    redis.call('SET', key, string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000))
  end
  local remaining = math.floor((tolerance - (nxt - now)) / interval)
  if remaining < 0 then remaining = 0 end
  return {allowed, remaining, math.ceil((nxt - now) / 1000), math.ceil(retry / 1000)}
end
local function redis_now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
`;
