-- admit.lua: decide, atomically for the whole fleet, whether a caller may make one Gemini call now,
-- and with which key.
--
-- KEYS[1]  pool prefix ("gt:{pool}:")
-- ARGV[1]  owner          who asks (host:pid:thread), recorded on the lease for operators
-- ARGV[2]  proc           processor id ("" = no processor cap / worker cooldown)
-- ARGV[3]  max_workers    virtual worker slots of that processor across the fleet (0 = unlimited)
-- ARGV[4]  worker_cool    ms a virtual slot rests after each call (the original's worker_cooldown_seconds)
-- ARGV[5]  interval       ms between any two admissions in the spacing scope (api_call_interval)
-- ARGV[6]  scope          spacing scope: "fleet", or a host name for per-address spacing
-- ARGV[7]  lease_ttl      ms until an unreported lease expires on its own
-- ARGV[8]  model          model id (quota windows are per project and model)
-- ARGV[9]  day_off        UTC offset of Pacific time in ms (daily quotas reset at Pacific midnight)
-- ARGV[10] window         ms length of the rate window ("minute"; scaled down in tests/benchmarks)
-- ARGV[11] margin         ms added to the window, covering the network delay between admission and arrival
-- ARGV[12] cancel_id      task id whose caller may have given up ("" = none)
-- ARGV[13] poll           ms to suggest when only a busy lease/slot blocks (its end time is unknown)
-- ARGV[14..] candidate key ids (the keys whose secret the caller holds)
--
-- Returns one of
--   {1, key_id, lease_id, expiry_ms, now_ms, slot}        admitted: call now with key_id
--   {0, reason, wait_ms, now_ms}                          wait: reason is spacing | cooldown | exhausted |
--                                                          quota | leased | max_workers | worker_cooldown
--   {-1, reason, detail}                                  never: no_usable_keys | cancelled
--
-- Invariants (checked by tests/keys/test_properties.py):
--   * two admissions in one spacing scope are at least `interval` ms apart;
--   * a key has at most `maxl` active leases (1 unless configured);
--   * a key is never admitted again within `cool` ms of its previous admission;
--   * a processor never has more than max_workers calls in flight;
--   * a project's admissions within any `window` (+margin) never exceed its rpm, nor its rpd in one day.
-- Choice among usable keys: paid before free, then least recently used, then id.

local owner, proc = ARGV[1], ARGV[2]
local max_workers, worker_cool = tonumber(ARGV[3]), tonumber(ARGV[4])
local interval, scope, lease_ttl = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local model, day_off = ARGV[8], tonumber(ARGV[9])
local window, margin = tonumber(ARGV[10]), tonumber(ARGV[11])
local cancel_id, poll = ARGV[12], tonumber(ARGV[13])

local now = now_ms()
reap(now)

local stats = P .. 'stats'
local function wait(reason, ms)
  redis.call('HINCRBY', stats, 'wait_' .. reason, 1)
  return {0, reason, math.max(1, math.ceil(ms)), now}
end

if cancel_id ~= '' and redis.call('EXISTS', P .. 'cancel:' .. cancel_id) == 1 then
  redis.call('HINCRBY', stats, 'refused_cancelled', 1)
  return {-1, 'cancelled', cancel_id}
end

-- 1. The processor's virtual worker slots (max_workers calls in flight, each slot resting worker_cool).
local slot = ''
local pk = P .. 'proc:' .. proc
if proc ~= '' and max_workers > 0 then
  if redis.call('ZCARD', pk) < max_workers then
    for i = 1, max_workers do redis.call('ZADD', pk, 'NX', 0, tostring(i)) end
  end
  redis.call('PEXPIRE', pk, 86400000)
  local first = redis.call('ZRANGE', pk, 0, 0, 'WITHSCORES')
  local ready = tonumber(first[2])
  if ready >= BUSY then
    return wait('max_workers', math.min(poll, math.max(1, ready - BUSY - now)))
  elseif ready > now then
    return wait('worker_cooldown', ready - now)
  end
  slot = first[1]
end

-- 2. Quota windows per (project, model), computed once per project, only for projects with limits.
local win_cache = {}
local limited = {}
for _, p in ipairs(redis.call('SMEMBERS', P .. 'limited')) do limited[p] = true end
local NO_LIMITS = {0, nil, nil}
local function quota_ready(project)
  if not limited[project] then return NO_LIMITS end
  if win_cache[project] then return win_cache[project] end
  local lk = P .. 'proj:' .. project
  local lim = redis.call('HMGET', lk, 'rpm|' .. model, 'rpm', 'rpd|' .. model, 'rpd')
  local rpm = tonumber(lim[1] or lim[2] or '')
  local rpd = tonumber(lim[3] or lim[4] or '')
  local ready = now
  if rpm then
    local wk = P .. 'win:' .. project .. '|' .. model
    redis.call('ZREMRANGEBYSCORE', wk, '-inf', '(' .. (now - window - margin))  -- closed window: an admission exactly one window old still counts
    local n = redis.call('ZCARD', wk)
    if n >= rpm then
      local oldest = redis.call('ZRANGE', wk, n - rpm, n - rpm, 'WITHSCORES')
      ready = math.max(ready, tonumber(oldest[2]) + window + margin + 1)
    end
  end
  if rpd then
    local used = tonumber(redis.call('GET', P .. 'day:' .. project .. '|' .. model .. '|' .. day_number(now, day_off)) or '0')
    if used >= rpd then ready = math.max(ready, day_end(now, day_off)) end
  end
  win_cache[project] = {ready, rpm, rpd}
  return win_cache[project]
end

-- 3. Keys.
local best, best_rank = nil, nil
local min_wait, wait_reason = nil, nil
local any_usable_state = false
for i = 14, #ARGV do
  local k = load_hot(ARGV[i])
  if k then
    refresh(k, now)
    if k.st ~= 'FAILED_INIT' then
      any_usable_state = true
      local ready, reason = now, nil
      if k.st ~= 'AVAILABLE' then
        ready = k.untl
        if k.st == 'COOLDOWN' then reason = 'cooldown' else reason = 'exhausted' end
      end
      if k.nb > ready then ready, reason = k.nb, 'cooldown' end
      if k.nl >= k.maxl then
        local klk = P .. 'kl:' .. k.id
        -- self-heal: drop lease entries whose expiry passed but were not reaped (e.g. lease records lost)
        if redis.call('ZREMRANGEBYSCORE', klk, '-inf', now) > 0 then
          k.nl = redis.call('ZCARD', klk)
          redis.call('HSET', k.kk, 'nl', k.nl)
        end
        if k.nl >= k.maxl then
          local e = redis.call('ZRANGE', klk, 0, 0, 'WITHSCORES')
          local lease_ready = math.min(tonumber(e[2]), now + poll)
          if lease_ready > ready then ready, reason = lease_ready, 'leased' end
        end
      end
      if ready <= now then
        local q = quota_ready(k.proj)
        if q[1] > ready then ready, reason = q[1], 'quota' end
      end
      if ready <= now then
        local paid = 1
        if k.cat == 'paid' then paid = 0 end
        local rank = {paid, k.last, k.id}
        if not best or rank[1] < best_rank[1] or (rank[1] == best_rank[1] and (rank[2] < best_rank[2]
            or (rank[2] == best_rank[2] and rank[3] < best_rank[3]))) then
          best, best_rank = k, rank
        end
      elseif not min_wait or ready - now < min_wait then
        min_wait, wait_reason = ready - now, reason
      end
    end
  end
end

if not any_usable_state then
  redis.call('HINCRBY', stats, 'refused_no_usable_keys', 1)
  return {-1, 'no_usable_keys', #ARGV - 13}
end

-- 4. The spacing gate (fleet-wide or per host).
local gk = P .. 'gate:' .. scope
local gate = tonumber(redis.call('GET', gk) or '0') or 0
if not best then
  if gate - now > min_wait then return wait('spacing', gate - now) end
  return wait(wait_reason, min_wait)
end
if gate > now then return wait('spacing', gate - now) end

-- 5. Admit: record the lease, advance the gate, count the quota windows.
local lid = tostring(redis.call('INCR', P .. 'seq'))
local exp = now + lease_ttl
redis.call('HSET', P .. 'lease:' .. lid, 'key', best.id, 'issued', now, 'exp', exp, 'owner', owner,
           'proc', proc, 'slot', slot, 'proj', best.proj, 'model', model)
redis.call('PEXPIRE', P .. 'lease:' .. lid, lease_ttl + 86400000)
redis.call('ZADD', P .. 'leases', exp, lid)
redis.call('ZADD', P .. 'kl:' .. best.id, exp, lid)
redis.call('HSET', best.kk, 'last', now, 'nb', now + best.cool, 'nl', best.nl + 1)
redis.call('HINCRBY', best.kk, 'admits', 1)
if interval > 0 then
  redis.call('SET', gk, now + interval, 'PX', interval + 60000)
end
if slot ~= '' then
  redis.call('ZADD', pk, BUSY + exp, slot)
end
local q = win_cache[best.proj]
if q and q[2] then
  local wk = P .. 'win:' .. best.proj .. '|' .. model
  redis.call('ZADD', wk, now, lid)
  redis.call('PEXPIRE', wk, window + margin + 60000)
end
if q and q[3] then
  local dk = P .. 'day:' .. best.proj .. '|' .. model .. '|' .. day_number(now, day_off)
  redis.call('INCR', dk)
  redis.call('PEXPIREAT', dk, day_end(now, day_off) + 3600000)
end
redis.call('HINCRBY', stats, 'admitted', 1)
return {1, best.id, lid, exp, now, slot}
