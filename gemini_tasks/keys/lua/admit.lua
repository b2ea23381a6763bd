-- admit.lua: decide, atomically for the whole fleet, whether a caller may make one Gemini call now,
-- and with which key.
--
-- KEYS[1]  pool prefix ("gt:{pool}:")
-- ARGV[1]  owner          who asks (host:pid:thread), recorded on the lease for operators
-- ARGV[2]  proc           processor id ("" = no processor cap / worker cooldown)
-- ARGV[3]  max_workers    virtual worker slots of that processor across the fleet (0 = unlimited)
-- ARGV[4]  worker_cool    ms a virtual slot rests after each call (the original's worker_cooldown_seconds)
-- ARGV[5]  interval       ms between two admissions of this processor in the spacing scope (api_call_interval)
-- ARGV[6]  scope          spacing scope: "fleet", or a host name for per-address spacing
-- ARGV[7]  lease_ttl      ms until an unreported, unrenewed lease expires on its own (renew.lua extends it)
-- ARGV[8]  model          model id (quota windows are per project and model)
-- ARGV[9]  tz             Pacific offsets "start_ms:offset_ms,..." (lib.lua parse_tz; daily quotas reset at
--                          Pacific midnight, DST-aware)
-- ARGV[10] window         ms length of the rate window ("minute"; scaled down in tests/benchmarks)
-- ARGV[11] margin         ms added to the window, covering the network delay between admission and arrival
-- ARGV[12] cancel_id      task id whose caller may have given up ("" = none)
-- ARGV[13] poll           ms to suggest when only a busy lease/slot blocks (its end time is unknown)
-- ARGV[14] tokens         estimated input tokens of the request (0 = unknown; tpm limits then ignore it)
-- ARGV[15] admission_id   the caller's random id for this admission, also the lease id. Idempotent: when a
--                          lease with this id exists, it is returned again unchanged (redis-py re-sends
--                          EVALSHA after a timeout or a reset; the lost reply's lease is not orphaned)
-- ARGV[16..] candidate key ids (the keys whose secret the caller holds)
--
-- Returns one of
--   {1, key_id, lease_id, expiry_ms, issued_ms, slot}     admitted: call now with key_id
--   {0, reason, wait_ms, now_ms}                          wait: reason is spacing | cooldown | exhausted |
--                                                          quota | leased | max_workers | worker_cooldown
--   {-1, reason, detail}                                  never: no_usable_keys | cancelled
--
-- Invariants (checked by tests/keys/test_properties.py):
--   * two admissions of one processor in one spacing scope are at least its `interval` ms apart; processors
--     never wait for each other's gates (a processor with interval 0 has no gate);
--   * the same admission_id never yields two leases;
--   * a key has at most `maxl` active leases (1 unless configured);
--   * a key is never admitted again within `cool` ms of its previous admission;
--   * a processor never has more than max_workers calls in flight;
--   * a project's admissions within any `window` (+margin) never exceed its rpm, nor its rpd in one day,
--     and their input tokens (estimated at admission, corrected by report.lua) never exceed its tpm
--     (a single request larger than tpm is admitted only into an empty window: the API decides).
-- Choice among usable keys: paid before free, then least recently used, then id.

local owner, proc = ARGV[1], ARGV[2]
local max_workers, worker_cool = tonumber(ARGV[3]), tonumber(ARGV[4])
local interval, scope, lease_ttl = tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local model, tz = ARGV[8], ARGV[9]
local tzt = nil
local function tzt_get()
  if not tzt then tzt = parse_tz(tz) end
  return tzt
end
local window, margin = tonumber(ARGV[10]), tonumber(ARGV[11])
local cancel_id, poll = ARGV[12], tonumber(ARGV[13])
local tokens = tonumber(ARGV[14]) or 0
local aid = ARGV[15]
local FIRST_CAND = 16

local now = now_ms()
if aid ~= '' then
  local held = redis.call('HMGET', P .. 'lease:' .. aid, 'key', 'exp', 'issued', 'slot')
  if held[1] then
    redis.call('HINCRBY', P .. 'stats', 'admit_repeated', 1)
    return {1, held[1], aid, tonumber(held[2]), tonumber(held[3]), held[4] or ''}
  end
end
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
local NO_LIMITS = {0, nil, nil, nil}

-- Input tokens in the sliding window of (project, model): tokz holds lease -> admission time, tokh holds
-- lease -> tokens and '__sum', their total. Entries leave the window here, each exactly once.
local function token_ready(project, tpm)
  local zk = P .. 'tokz:' .. project .. '|' .. model
  local hk = P .. 'tokh:' .. project .. '|' .. model
  local cutoff = '(' .. (now - window - margin)
  local old = redis.call('ZRANGEBYSCORE', zk, '-inf', cutoff, 'LIMIT', 0, 512)
  if #old > 0 then
    local freed = 0
    for _, v in ipairs(redis.call('HMGET', hk, unpack(old))) do freed = freed + (tonumber(v) or 0) end
    redis.call('HDEL', hk, unpack(old))
    redis.call('ZREM', zk, unpack(old))
    if freed ~= 0 then redis.call('HINCRBY', hk, '__sum', -freed) end
  end
  local sum = tonumber(redis.call('HGET', hk, '__sum') or '0') or 0
  if sum <= 0 or sum + tokens <= tpm then return now end
  local entries = redis.call('ZRANGE', zk, 0, 127, 'WITHSCORES')
  if #entries == 0 then
    redis.call('HSET', hk, '__sum', 0)  -- self-heal a sum left without entries
    return now
  end
  local ids = {}
  for i = 1, #entries, 2 do ids[#ids + 1] = entries[i] end
  local need, freed, t = sum + tokens - tpm, 0, now
  for i, v in ipairs(redis.call('HMGET', hk, unpack(ids))) do
    freed = freed + (tonumber(v) or 0)
    t = tonumber(entries[2 * i])
    if freed >= need then break end
  end
  return t + window + margin + 1
end
local function quota_ready(project)
  if not limited[project] then return NO_LIMITS end
  if win_cache[project] then return win_cache[project] end
  local lk = P .. 'proj:' .. project
  local lim = redis.call('HMGET', lk, 'rpm|' .. model, 'rpm', 'rpd|' .. model, 'rpd', 'tpm|' .. model, 'tpm')
  local rpm = tonumber(lim[1] or lim[2] or '')
  local rpd = tonumber(lim[3] or lim[4] or '')
  local tpm = tonumber(lim[5] or lim[6] or '')
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
    local used = tonumber(redis.call('GET', P .. 'day:' .. project .. '|' .. model .. '|' .. day_number(now, tzt_get())) or '0')
    if used >= rpd then ready = math.max(ready, day_end(now, tzt_get())) end
  end
  if tpm and tokens > 0 then ready = math.max(ready, token_ready(project, tpm)) end
  win_cache[project] = {ready, rpm, rpd, tpm}
  return win_cache[project]
end

-- 3. Keys. Keys whose waiting time has passed move to `ready`; then the candidates are read in rank order
--    (paid first, then least recently used) and the first one whose project has quota room wins. Only when
--    none is ready are the candidates' own states read, to give the exact wait and its reason.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', P .. 'waiting', '-inf', now, 'LIMIT', 0, 64)) do
  local k = load_hot(id)
  if k then
    refresh(k, now)
    place(k, now)
  else
    redis.call('ZREM', P .. 'waiting', id)
  end
end

local ncand = #ARGV - FIRST_CAND + 1
local cand = {}
for i = FIRST_CAND, #ARGV do cand[ARGV[i]] = true end
local best = nil
local min_wait, wait_reason = nil, nil
local function consider_wait(ms, reason)
  if not min_wait or ms < min_wait then min_wait, wait_reason = ms, reason end
end

local PAGE = 32
local offset = 0
while not best do
  local page = redis.call('ZRANGE', P .. 'ready', offset, offset + PAGE - 1)
  if #page == 0 then break end
  for _, id in ipairs(page) do
    if cand[id] then
      local k = load_hot(id)
      if k then
        local q = quota_ready(k.proj)
        if q[1] > now then
          consider_wait(q[1] - now, 'quota')
        else
          best = k
          break
        end
      end
    end
  end
  offset = offset + PAGE
end

if not best then
  -- nothing ready: each candidate is usable when its own wait (waiting time, busy lease) is over AND its
  -- project's quota window has room, so its wait is the later of the two, with that one's reason; the wait
  -- returned is the soonest over the candidates
  local function consider_key_wait(ms, reason, proj)
    local q = quota_ready(proj)
    if q[1] - now > ms then consider_wait(q[1] - now, 'quota') else consider_wait(ms, reason) end
  end
  local any_usable_state = false
  local cids = {}
  for i = FIRST_CAND, #ARGV do cids[#cids + 1] = ARGV[i] end
  local in_waiting = redis.call('ZMSCORE', P .. 'waiting', unpack(cids))
  local in_ready = redis.call('ZMSCORE', P .. 'ready', unpack(cids))
  for i, id in ipairs(cids) do
    if in_ready[i] then
      any_usable_state = true  -- ready but its project is at quota (already counted above)
    elseif in_waiting[i] then
      any_usable_state = true
      local t = tonumber(in_waiting[i])
      local kv = redis.call('HMGET', P .. 'key:' .. id, 'st', 'proj')
      local st, proj = kv[1], kv[2]
      if not proj or proj == '' then proj = id end
      local reason = 'cooldown'
      if st == 'TEMPORARILY_EXHAUSTED' or st == 'FULLY_EXHAUSTED' then reason = 'exhausted' end
      consider_key_wait(t - now, reason, proj)
    else
      local k = load_hot(id)
      if k and k.st ~= 'FAILED_INIT' then
        any_usable_state = true
        if k.nl >= k.maxl then
          local klk = P .. 'kl:' .. id
          -- self-heal: drop lease entries whose expiry passed but were not reaped (lease records lost)
          if redis.call('ZREMRANGEBYSCORE', klk, '-inf', now) > 0 then
            k.nl = redis.call('ZCARD', klk)
            redis.call('HSET', k.kk, 'nl', k.nl)
          end
          local e = redis.call('ZRANGE', klk, 0, 0, 'WITHSCORES')
          if e[2] then consider_key_wait(math.min(tonumber(e[2]), now + poll) - now, 'leased', k.proj)
          else consider_key_wait(1, 'leased', k.proj) end
        end
        place(k, now)
      end
    end
  end
  if not any_usable_state then
    redis.call('HINCRBY', stats, 'refused_no_usable_keys', 1)
    return {-1, 'no_usable_keys', ncand}
  end
end

-- 4. The processor's spacing gate (fleet-wide or per host); no gate at interval 0.
local gk = P .. 'gate:' .. scope .. '|' .. (proc ~= '' and proc or ('i' .. interval))
local gate = 0
if interval > 0 then gate = tonumber(redis.call('GET', gk) or '0') or 0 end
if not best then
  min_wait = math.max(1, min_wait or poll)
  if gate - now > min_wait then return wait('spacing', gate - now) end
  return wait(wait_reason or 'leased', min_wait)
end
if gate > now then return wait('spacing', gate - now) end

-- 5. Admit: record the lease, advance the gate, count the quota windows.
local lid = aid
if lid == '' then lid = 's' .. redis.call('INCR', P .. 'seq') .. '.' .. now end
local exp = now + lease_ttl
local q = win_cache[best.proj]
local counted_w = (q and q[2]) and 1 or 0
local counted_tk = (q and q[4] and tokens > 0) and tokens or 0
redis.call('HSET', P .. 'lease:' .. lid, 'key', best.id, 'issued', now, 'exp', exp, 'owner', owner,
           'proc', proc, 'slot', slot, 'proj', best.proj, 'model', model, 'w', counted_w, 'tk', counted_tk,
           'wx', window + margin + 60000, 'mg', margin)
redis.call('PEXPIRE', P .. 'lease:' .. lid, lease_ttl + 86400000)
redis.call('ZADD', P .. 'leases', exp, lid)
redis.call('ZADD', P .. 'kl:' .. best.id, exp, lid)
best.last, best.nb, best.nl = now, now + best.cool, best.nl + 1
redis.call('HSET', best.kk, 'last', now, 'nb', best.nb, 'nl', best.nl)
redis.call('HINCRBY', best.kk, 'admits', 1)
place(best, now)
if interval > 0 then
  redis.call('SET', gk, now + interval, 'PX', interval + 60000)
  redis.call('ZADD', P .. 'gates', now + interval, gk)  -- for status: the latest gate of any processor
end
if slot ~= '' then
  redis.call('ZADD', pk, BUSY + exp, slot)
end
if q and q[2] then
  local wk = P .. 'win:' .. best.proj .. '|' .. model
  redis.call('ZADD', wk, now, lid)
  redis.call('PEXPIRE', wk, window + margin + 60000)
end
if q and q[4] and tokens > 0 then
  local zk = P .. 'tokz:' .. best.proj .. '|' .. model
  local hk = P .. 'tokh:' .. best.proj .. '|' .. model
  redis.call('ZADD', zk, now, lid)
  redis.call('HSET', hk, lid, tokens)
  redis.call('HINCRBY', hk, '__sum', tokens)
  redis.call('PEXPIRE', zk, window + margin + 60000)
  redis.call('PEXPIRE', hk, window + margin + 60000)
end
if q and q[3] then
  local dk = P .. 'day:' .. best.proj .. '|' .. model .. '|' .. day_number(now, tzt_get())
  redis.call('INCR', dk)
  redis.call('PEXPIREAT', dk, day_end(now, tzt_get()) + 3600000)
end
redis.call('HINCRBY', stats, 'admitted', 1)
return {1, best.id, lid, exp, now, slot}
