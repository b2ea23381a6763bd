-- register.lua: add or update one key's configuration, and check its fingerprint.
--
-- KEYS[1]  pool prefix
-- ARGV[1]  id             the env var name, e.g. GEMINI_API_KEY_3
-- ARGV[2]  category       free | paid
-- ARGV[3]  cool           ms cooldown after each use
-- ARGV[4]  ewait          ms benched after a per-minute 429
-- ARGV[5]  fwait          ms benched when fully exhausted
-- ARGV[6]  maxr           consecutive 429 events before full exhaustion
-- ARGV[7]  maxl           concurrent leases allowed on this key
-- ARGV[8]  project        Google Cloud project (quota unit); "" = the key is its own project
-- ARGV[9]  fingerprint    one-way fingerprint of the secret as this host holds it; "" = not held here
-- ARGV[10] replace        "1" = accept a new fingerprint (the secret was rotated)
-- ARGV[11] held_only      "1" = a worker announces that it holds this id: check/set the fingerprint and add
--                          the id to `held`, leave the configuration (written by the application) alone
--
-- Returns {1, ""} when registered, {0, existing_fingerprint} when this host's secret for the id differs
-- from the one registered earlier (two hosts disagree about what GEMINI_API_KEY_3 is).
-- The low-level form of configure.lua for one key (tests, benchmarks): it writes the configuration as given,
-- marked explicit. Sets the pool's epoch when it has none.
-- State fields (status, counts, leases) are never reset by registration, so a restart or a second
-- process registering the same pool does not un-bench a key.

local id, fp, replace = ARGV[1], ARGV[9], ARGV[10]
redis.call('SET', P .. 'epoch', 'r' .. now_ms(), 'NX')
local kk = P .. 'key:' .. id
if fp ~= '' then
  local old = redis.call('HGET', kk, 'fp')
  if old and old ~= '' and old ~= fp and replace ~= '1' then
    return {0, old}
  end
end
if ARGV[11] == '1' then
  if fp ~= '' then redis.call('HSET', kk, 'fp', fp) end
  redis.call('SADD', P .. 'held', id)
  return {1, ''}
end
local old_proj = redis.call('HGET', kk, 'proj')
if old_proj and old_proj ~= '' and old_proj ~= ARGV[8] then
  redis.call('SREM', P .. 'projkeys:' .. old_proj, id)
end
redis.call('HSET', kk, 'cat', ARGV[2], 'cool', ARGV[3], 'ewait', ARGV[4], 'fwait', ARGV[5], 'maxr', ARGV[6],
           'maxl', ARGV[7], 'proj', ARGV[8], 'src', 'explicit')
if fp ~= '' then redis.call('HSET', kk, 'fp', fp) end
redis.call('HSETNX', kk, 'st', 'AVAILABLE')
redis.call('SADD', P .. 'ids', id)
local k = load_key(id)
local now = now_ms()
refresh(k, now)
place(k, now)
if ARGV[8] ~= '' then redis.call('SADD', P .. 'projkeys:' .. ARGV[8], id) end
return {1, ''}
