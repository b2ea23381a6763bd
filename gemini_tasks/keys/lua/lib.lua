-- lib.lua: helpers shared by every key-manager script. Python prepends this file to each script before
-- register_script, so each EVALSHA still runs as one atomic unit.
--
-- KEYS[1] is the pool prefix, e.g. "gt:{default}:". Every name the scripts touch starts with it, and the
-- prefix carries a {hash tag}, so all of a pool's keys live in one Redis Cluster slot.
--
-- Layout under the prefix P:
--   key:<id>            HASH  one API key, known by its id (the env var name). Config fields: cat, cool,
--                             ewait, fwait, maxr, maxl, proj, fp, and src/by/at (who set the config: src is
--                             "default" or "explicit", by names the process, at is when). State fields: st,
--                             until, last, nb, exh, texh, bench, nl, admits. nl counts the key's active leases
--                             (kl:<id> is the truth; nl is kept beside it so admission need not ZCARD every
--                             key). bench is the Redis time of the key's last exhaustion event: a 429 on a
--                             lease issued at or before it belongs to that event (issue times, unlike a
--                             counter, do not go backwards when Redis loses recent writes). The secret is
--                             never stored; fp is a one-way fingerprint.
--   ids                 SET   every registered (configured) key id
--   held                SET   key ids some worker announced it holds
--   projkeys:<project>  SET   key ids that share one Google Cloud project (one quota)
--   proj:<project>      HASH  quota limits: rpm, rpd, and per-model "rpm|<model>", "rpd|<model>"
--   limited             SET   projects that have a proj:<project> hash (read once per admission)
--   kl:<id>             ZSET  active leases of a key: lease id -> expiry (ms)
--   ready               ZSET  keys usable now, ranked: (paid 0 | free 1) * 1e13 + last use (ms); ties by id
--   waiting             ZSET  keys that become usable later: id -> the time they do (ms)
--                             A key is in exactly one of ready/waiting, or in neither when it is FAILED_INIT
--                             or holds its maximum number of leases; place() keeps this true after every
--                             change, so admission reads a few ranked entries instead of every key.
--   lease:<lid>         HASH  key, issued, exp, owner, proc, slot, proj, model, w (1: counted in win:),
--                             tk (tokens counted in tokz:/tokh:), wx (ms those windows' keys live), mg (the
--                             admission's margin, ms: report.lua re-stamps the entries at report - mg).
--                             <lid> is the caller's admission id (random, unique per admission), so a lease id
--                             never repeats, even after Redis lost recent writes: a stale report or renewal can
--                             only ever find its own lease (fencing by identity, not by a counter).
--   leases              ZSET  every active lease: lease id -> expiry (ms); expired ones are reaped here
--   gate:<scope>|<proc> STRING earliest time (ms) of a processor's next admission in a spacing scope ("fleet"
--                             or a host); each processor keeps its own interval (proc "" -> "i<interval>")
--   gates               ZSET  gate key -> its time (ms), for status (the latest gate of any processor); entries
--                             older than an hour are trimmed by status.lua
--   proc:<proc id>      ZSET  a processor's virtual worker slots: slot -> ready time (ms); busy = BUSY + expiry
--   win:<project>|<model> ZSET admissions in the sliding rate window: lease id -> time (ms)
--   tokz:<project>|<model> ZSET / tokh:<project>|<model> HASH  the input-token window: lease id -> time,
--                             lease id -> tokens, and '__sum' (their total)
--   day:<project>|<model>|<day> STRING admissions on one Pacific-time day
--   cancel:<task id>    STRING present when the caller gave up on that task (admission refused)
--   epoch               STRING a random id written when the pool is first registered: when it is missing
--                             or changed, Redis lost the pool's state and managers/workers register again
--   freed               CHANNEL a lease ended (payload: key id); waiters for a busy key or slot wake on it
--   stats               HASH  counters for metrics
--   clock_offset        STRING milliseconds added to Redis TIME (tests advance time without waiting)
--
-- Time is always Redis TIME (plus clock_offset), never a worker's clock.

local P = KEYS[1]
local BUSY = 1000000000000000  -- 1e15: scores at or above it in proc:<id> mark a busy slot

local function now_ms()
  local t = redis.call('TIME')
  local off = tonumber(redis.call('GET', P .. 'clock_offset') or '0') or 0
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + off
end

local KEY_FIELDS = {'cat', 'cool', 'ewait', 'fwait', 'maxr', 'maxl', 'proj', 'st', 'until', 'last', 'nb',
                    'exh', 'texh', 'bench', 'bseq', 'nl'}

local function load_key(id)
  local kk = P .. 'key:' .. id
  local v = redis.call('HMGET', kk, unpack(KEY_FIELDS))
  if not v[1] then return nil end
  local proj = v[7]
  if not proj or proj == '' then proj = id end
  return {
    id = id, kk = kk, cat = v[1],
    cool = tonumber(v[2]) or 0, ewait = tonumber(v[3]) or 0, fwait = tonumber(v[4]) or 0,
    maxr = tonumber(v[5]) or 3, maxl = tonumber(v[6]) or 1, proj = proj,
    st = v[8] or 'AVAILABLE', untl = tonumber(v[9]) or 0, last = tonumber(v[10]) or 0,
    nb = tonumber(v[11]) or 0, exh = tonumber(v[12]) or 0, texh = tonumber(v[13]) or 0,
    bench = tonumber(v[14]) or 0, bseq = tonumber(v[15]) or 0, nl = tonumber(v[16]) or 0,
  }
end

-- The fields admission needs (the hot path reads 9 fields per candidate instead of 16).
local HOT_FIELDS = {'cat', 'cool', 'maxl', 'proj', 'st', 'until', 'last', 'nb', 'nl'}
local function load_hot(id)
  local kk = P .. 'key:' .. id
  local v = redis.call('HMGET', kk, unpack(HOT_FIELDS))
  if not v[1] then return nil end
  local proj = v[4]
  if not proj or proj == '' then proj = id end
  return {
    id = id, kk = kk, cat = v[1], cool = tonumber(v[2]) or 0, maxl = tonumber(v[3]) or 1, proj = proj,
    st = v[5] or 'AVAILABLE', untl = tonumber(v[6]) or 0, last = tonumber(v[7]) or 0,
    nb = tonumber(v[8]) or 0, nl = tonumber(v[9]) or 0,
  }
end

-- Time-based recovery, computed lazily whenever a script looks at a key.
local function refresh(k, now)
  if (k.st == 'COOLDOWN' or k.st == 'TEMPORARILY_EXHAUSTED' or k.st == 'FULLY_EXHAUSTED') and k.untl <= now then
    if k.st == 'FULLY_EXHAUSTED' then
      k.exh = 0
      redis.call('HSET', k.kk, 'exh', 0)
    end
    k.st = 'AVAILABLE'
    k.untl = 0
    redis.call('HSET', k.kk, 'st', 'AVAILABLE', 'until', 0)
  end
end

-- Where a key belongs now: ready (ranked), waiting (until its ready time), or neither.
local function ready_time(k)
  local t = k.nb
  if k.st ~= 'AVAILABLE' and k.untl > t then t = k.untl end
  return t
end

local function rank(k)
  local tier = 1
  if k.cat == 'paid' then tier = 0 end
  return tier * 10000000000000 + k.last
end

local function place(k, now)
  if k.st == 'FAILED_INIT' or k.nl >= k.maxl then
    redis.call('ZREM', P .. 'ready', k.id)
    redis.call('ZREM', P .. 'waiting', k.id)
    return
  end
  local t = ready_time(k)
  if t > now then
    redis.call('ZREM', P .. 'ready', k.id)
    redis.call('ZADD', P .. 'waiting', t, k.id)
  else
    redis.call('ZREM', P .. 'waiting', k.id)
    redis.call('ZADD', P .. 'ready', rank(k), k.id)
  end
end

-- Pacific-time days (daily quotas reset at midnight America/Los_Angeles).
-- tz is the caller's offset table from tzdata: "start_ms:offset_ms,start_ms:offset_ms,..." in time order
-- (keys/timeutil.py: the transitions around now). The offset at t is the last entry starting at or before t,
-- so a day that starts in one offset and ends in another (the DST change Sundays) ends at its real midnight.
local function parse_tz(tz)
  local out = {}
  for a, b in string.gmatch(tz, '(-?%d+):(-?%d+)') do out[#out + 1] = {tonumber(a), tonumber(b)} end
  return out
end
local function offset_at(tzt, t)
  local off = tzt[1][2]
  for _, e in ipairs(tzt) do
    if e[1] <= t then off = e[2] else break end
  end
  return off
end
local function day_number(now, tzt)
  return math.floor((now + offset_at(tzt, now)) / 86400000)
end
local function day_end(now, tzt)
  local wall = (day_number(now, tzt) + 1) * 86400000  -- next local midnight, in local wall-clock ms
  local guess = wall - offset_at(tzt, now)
  return wall - offset_at(tzt, guess)  -- changes happen at 02:00 local, never near midnight
end

-- Remove a lease's records. A slot held by the lease becomes ready at now + slot_delay.
-- Returns {key=, issued=, exp=, proj=, model=} or nil when the lease is unknown (already reported or reaped).
local BUSY_SLOT = BUSY
local function release_lease(lid, now, slot_delay)
  local lk = P .. 'lease:' .. lid
  local v = redis.call('HMGET', lk, 'key', 'issued', 'exp', 'proc', 'slot', 'proj', 'model')
  redis.call('ZREM', P .. 'leases', lid)
  if not v[1] then return nil end
  if redis.call('ZREM', P .. 'kl:' .. v[1], lid) == 1 and redis.call('EXISTS', P .. 'key:' .. v[1]) == 1 then
    redis.call('HINCRBY', P .. 'key:' .. v[1], 'nl', -1)
  end
  if v[4] and v[4] ~= '' then
    -- free the slot only while it is still this lease's (its score is BUSY + this lease's expiry)
    local sc = tonumber(redis.call('ZSCORE', P .. 'proc:' .. v[4], v[5]) or '0')
    if sc == BUSY_SLOT + tonumber(v[3]) then
      redis.call('ZADD', P .. 'proc:' .. v[4], 'XX', now + slot_delay, v[5])
    end
  end
  redis.call('DEL', lk)
  redis.call('PUBLISH', P .. 'freed', v[1])
  return {key = v[1], issued = tonumber(v[2]), exp = tonumber(v[3]), proj = v[6], model = v[7]}
end

-- Leases whose holder never reported (a killed worker) end here. The key is treated as used: a free key
-- gets its cooldown, so an unreported call still counts against the key's pacing.
local function reap(now)
  local expired = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, 64)
  for _, lid in ipairs(expired) do
    local l = release_lease(lid, now, 0)
    if l then
      local k = load_key(l.key)
      if k then
        refresh(k, now)
        if k.cool > 0 and k.st == 'AVAILABLE' then
          k.st, k.untl = 'COOLDOWN', now + k.cool
          redis.call('HSET', k.kk, 'st', 'COOLDOWN', 'until', k.untl)
        end
        place(k, now)
      end
      redis.call('HINCRBY', P .. 'stats', 'leases_expired', 1)
    end
  end
end
