import { createHash } from "node:crypto";
import { gcraFunctionLua } from "./redis-script.js";

/**
 * Admission in one atomic script (one round trip per call): the tokens-per-minute check, the budget
 * check, the requests-per-minute count, the reservation of the worst case in every budget window.
 * KEYS = tokens rate key, requests rate key, then one hash per budget window (fields `t` tokens and
 * `u` nano-USD). ARGV = tokens limit (0: none), tokens window ms, requests limit (0: none), requests
 * window ms, reserve tokens, reserve nano-USD, then per window: token limit (-1: none), nano-USD limit
 * (-1: none), expiry (ms since the epoch). Replies {0} admitted; {1, dimension (1 tokens, 2 requests),
 * allowed, remaining, resetMs, retryAfterMs} rate limited; {2, i, ...} over budget in windows i (1-based).
 * Budget counters expire after their window (PEXPIREAT), rate keys by themselves (redis-script.ts).
 */
export const admitLua = `${gcraFunctionLua}
local now = redis_now_us()
local tokens_limit = tonumber(ARGV[1])
if tokens_limit > 0 then
  local r = gcra(KEYS[1], tokens_limit, tonumber(ARGV[2]), 0, 'consume', now)
  if r[1] == 0 then return {1, 1, r[1], r[2], r[3], r[4]} end
end
local reserve_t = tonumber(ARGV[5])
local reserve_u = tonumber(ARGV[6])
local n = #KEYS - 2
local over = {2}
for i = 1, n do
  local limit_t = tonumber(ARGV[6 + 3 * i - 2])
  local limit_u = tonumber(ARGV[6 + 3 * i - 1])
  local spent = redis.call('HMGET', KEYS[2 + i], 't', 'u')
  local t = tonumber(spent[1]) or 0
  local u = tonumber(spent[2]) or 0
  if (limit_t >= 0 and t + reserve_t > limit_t) or (limit_u >= 0 and u + reserve_u > limit_u) then
    over[#over + 1] = i
  end
end
if #over > 1 then return over end
local requests_limit = tonumber(ARGV[3])
if requests_limit > 0 then
  local r = gcra(KEYS[2], requests_limit, tonumber(ARGV[4]), 1, 'consume', now)
  if r[1] == 0 then return {1, 2, r[1], r[2], r[3], r[4]} end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[2 + i], 't', string.format('%.0f', reserve_t))
  redis.call('HINCRBY', KEYS[2 + i], 'u', string.format('%.0f', reserve_u))
  redis.call('PEXPIREAT', KEYS[2 + i], ARGV[6 + 3 * i])
end
return {0}
`;

/**
 * Settlement in one atomic script (the call's second and last round trip): the real tokens charged to
 * tokens per minute, and real minus reserved added to every budget window. KEYS = tokens rate key, then
 * the windows; ARGV = tokens limit (0: none), tokens window ms, tokens, delta tokens, delta nano-USD,
 * then per window its expiry. Replies {1}.
 */
export const settleLua = `${gcraFunctionLua}
local tokens_limit = tonumber(ARGV[1])
local tokens = tonumber(ARGV[3])
if tokens_limit > 0 and tokens > 0 then
  gcra(KEYS[1], tokens_limit, tonumber(ARGV[2]), tokens, 'charge', redis_now_us())
end
for i = 2, #KEYS do
  redis.call('HINCRBY', KEYS[i], 't', ARGV[4])
  redis.call('HINCRBY', KEYS[i], 'u', ARGV[5])
  redis.call('PEXPIREAT', KEYS[i], ARGV[4 + i])
end
return {1}
`;

export const admitLuaSha = createHash("sha1").update(admitLua).digest("hex");
export const settleLuaSha = createHash("sha1").update(settleLua).digest("hex");
