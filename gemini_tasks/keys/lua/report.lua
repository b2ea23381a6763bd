-- report.lua: record the outcome of a call made under a lease, and end the lease.
--
-- KEYS[1]  pool prefix
-- ARGV[1]  lease_id
-- ARGV[2]  key_id       (from the admission; lets a report still count after its lease expired)
-- ARGV[3]  issued_ms    (from the admission; Redis time at which the lease was issued)
-- ARGV[4]  outcome      success | rate_limited | invalid_key | transient | persistent
-- ARGV[5]  retry_after  ms from RetryInfo.retryDelay, or -1
-- ARGV[6]  quota_kind   minute | day | tokens | limit_zero | unknown   (rate_limited only)
-- ARGV[7]  worker_cool  ms the processor slot rests before its next call
-- ARGV[8]  tz           Pacific offsets "start_ms:offset_ms,..." (lib.lua parse_tz)
-- ARGV[9]  prompt_tokens  input tokens the API counted (usageMetadata.promptTokenCount), or -1: replaces the
--                         admission's estimate in the project's token window
--
-- Returns {status, until_ms, counted, now_ms} where counted is 1 when a 429 started a new exhaustion
-- event, 0 when it belonged to an event already counted (or the outcome was not a 429); now_ms is the
-- Redis time at which the lease ended.
--
-- Safe to repeat (a re-sent EVALSHA whose first reply was lost): the lease is released once; a repeated 429 is
-- the same event (issued before the bench it caused); a repeated success only re-stamps the cooldown.
--
-- Invariants:
--   * a call's rate/token window entries end at least at report - margin (the API counted the request at
--     some moment before its reply): a call sent late never leaves our windows before the API's;
--   * a report only ever ends its own lease: lease ids are unique admission ids, never reused, so a holder
--     that was cut off and reports late (its lease expired, the key was leased again) frees nothing but
--     what is still its own (fencing);
--   * a 429 counts once per event: a report for a lease issued at or before the key's last bench (Redis
--     time, which unlike a counter does not go backwards when Redis loses recent writes) does not count
--     again (several workers that saw one burst of 429s bench the key once);
--   * a per-day signal always wins: a per-day 429 (or limit 0) on such a lease is not counted again but
--     still benches the key until Pacific midnight;
--   * a bench never shortens a longer one (a later per-minute event cannot end a day or full bench early);
--   * exhausted and failed states are never overwritten by a success (a late success cannot un-bench a key);
--   * per-minute 429: benched max(exhausted_wait, retryDelay), or just retryDelay when the project's limits
--     are configured (admission already paces it: a stray 429 is timing, not an unknown quota); after
--     max_exhausted_retries consecutive
--     events, fully exhausted for fully_exhausted_wait; per-day 429 (or limit 0): benched until the next
--     Pacific midnight, whatever retryDelay says;
--   * a 429 benches every key of the same project (they share one quota);
--   * invalid keys become FAILED_INIT and stay there until an operator resets them.

local lid, key_id, issued, outcome = ARGV[1], ARGV[2], tonumber(ARGV[3]) or 0, ARGV[4]
local retry_after, quota_kind = tonumber(ARGV[5]), ARGV[6]
local worker_cool = tonumber(ARGV[7])
local tzt = parse_tz(ARGV[8])
local day_kind = (quota_kind == 'day' or quota_kind == 'limit_zero')

local actual_tokens = tonumber(ARGV[9]) or -1

local now = now_ms()
local counted = redis.call('HMGET', P .. 'lease:' .. lid, 'w', 'tk', 'wx', 'mg')
local released = release_lease(lid, now, worker_cool)
-- The API counted the request when it arrived, somewhere between admission and now (the reply is here): the
-- windows counted it at admission, which is only safe while the call left within the margin. A worker stalled
-- between admission and send (a loaded host) sent it later, so the entries move to now - margin (never
-- earlier than they are; put back when trimmed meanwhile): an entry then leaves our window no sooner than the
-- API's. Over-counts by the call's latency beyond the margin, never under-counts.
if released and released.proj then
  local at = math.max(released.issued or 0, now - (tonumber(counted[4]) or 0))
  local ttl = tonumber(counted[3]) or 180000
  local wsuffix = released.proj .. '|' .. released.model
  if counted[1] == '1' then
    redis.call('ZADD', P .. 'win:' .. wsuffix, 'GT', at, lid)
    redis.call('PEXPIRE', P .. 'win:' .. wsuffix, ttl)
  end
  local tk = tonumber(counted[2]) or 0
  if tk > 0 then
    local zk, hk = P .. 'tokz:' .. wsuffix, P .. 'tokh:' .. wsuffix
    redis.call('ZADD', zk, 'GT', at, lid)
    if redis.call('HSETNX', hk, lid, tk) == 1 then redis.call('HINCRBY', hk, '__sum', tk) end
    redis.call('PEXPIRE', zk, ttl)
    redis.call('PEXPIRE', hk, ttl)
  end
end
if released and actual_tokens >= 0 and released.proj then
  local hk = P .. 'tokh:' .. released.proj .. '|' .. released.model
  local estimate = redis.call('HGET', hk, lid)
  if estimate then
    redis.call('HSET', hk, lid, actual_tokens)
    redis.call('HINCRBY', hk, '__sum', actual_tokens - tonumber(estimate))
  end
end
local stats = P .. 'stats'
redis.call('HINCRBY', stats, 'report_' .. outcome, 1)

local k = load_key(key_id)
if not k then return {'UNKNOWN', 0, 0, now} end
refresh(k, now)

local function bench(kx)
  -- one exhaustion event on one key
  kx.exh = kx.exh + 1
  kx.texh = kx.texh + 1
  local st, untl
  if day_kind then
    st, untl = 'FULLY_EXHAUSTED', day_end(now, tzt)
  elseif kx.exh >= kx.maxr then
    st, untl = 'FULLY_EXHAUSTED', now + kx.fwait
  elseif quota_kind == 'minute' and retry_after >= 0 and redis.call('SISMEMBER', P .. 'limited', kx.proj) == 1 then
    st, untl = 'TEMPORARILY_EXHAUSTED', now + retry_after
  else
    st, untl = 'TEMPORARILY_EXHAUSTED', now + math.max(kx.ewait, retry_after)
  end
  -- never shorten a longer bench
  if (kx.st == 'TEMPORARILY_EXHAUSTED' or kx.st == 'FULLY_EXHAUSTED') and kx.untl > untl then
    untl = kx.untl
    if kx.st == 'FULLY_EXHAUSTED' then st = 'FULLY_EXHAUSTED' end
  end
  if kx.st == 'FAILED_INIT' then st, untl = 'FAILED_INIT', 0 end
  kx.st, kx.untl, kx.bench = st, untl, now
  redis.call('HSET', kx.kk, 'st', st, 'until', untl, 'exh', kx.exh, 'texh', kx.texh, 'bench', now)
end

-- a per-day signal on a lease of an event already counted: not a new event, but the key rests until midnight
local function day_upgrade(kx)
  if kx.st == 'FAILED_INIT' then return false end
  local e = day_end(now, tzt)
  if kx.st == 'FULLY_EXHAUSTED' and kx.untl >= e then return false end
  kx.st, kx.untl = 'FULLY_EXHAUSTED', e
  redis.call('HSET', kx.kk, 'st', 'FULLY_EXHAUSTED', 'until', e)
  return true
end

if outcome == 'success' or outcome == 'persistent' then
  local fields = {'last', math.max(k.last, now)}
  if outcome == 'success' and issued > k.bench and k.exh > 0 then
    k.exh = 0
    table.insert(fields, 'exh'); table.insert(fields, 0)
  end
  if k.st == 'AVAILABLE' or k.st == 'COOLDOWN' then
    if k.cool > 0 then
      k.st, k.untl = 'COOLDOWN', math.max(k.untl, now + k.cool)
    else
      k.st, k.untl = 'AVAILABLE', 0
    end
    table.insert(fields, 'st'); table.insert(fields, k.st)
    table.insert(fields, 'until'); table.insert(fields, k.untl)
  end
  redis.call('HSET', k.kk, unpack(fields))
  place(k, now)
  return {k.st, k.untl, 0, now}
elseif outcome == 'rate_limited' then
  redis.call('HINCRBY', stats, 'r429_' .. quota_kind, 1)
  local dup = issued <= k.bench
  if dup then
    redis.call('HINCRBY', stats, 'r429_duplicate', 1)
    if not day_kind or not day_upgrade(k) then
      place(k, now)
      return {k.st, k.untl, 0, now}
    end
  else
    bench(k)
  end
  place(k, now)
  -- keys of the same project share the quota: bench them for the same event, once each
  if k.proj ~= k.id then
    local siblings = redis.call('SMEMBERS', P .. 'projkeys:' .. k.proj)
    for _, sid in ipairs(siblings) do
      if sid ~= k.id then
        local s = load_key(sid)
        if s then
          refresh(s, now)
          if s.st ~= 'FAILED_INIT' then
            if issued > s.bench then
              bench(s)
            elseif day_kind then
              day_upgrade(s)
            end
            place(s, now)
          end
        end
      end
    end
  end
  return {k.st, k.untl, dup and 0 or 1, now}
elseif outcome == 'invalid_key' then
  k.st, k.untl = 'FAILED_INIT', 0
  redis.call('HSET', k.kk, 'st', 'FAILED_INIT', 'until', 0)
  place(k, now)
  return {'FAILED_INIT', 0, 0, now}
end
-- transient: the key is released untouched (its admission cooldown `nb` still applies)
place(k, now)
return {k.st, k.untl, 0, now}
