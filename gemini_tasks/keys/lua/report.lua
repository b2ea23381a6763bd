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
-- ARGV[8]  day_off      UTC offset of Pacific time in ms
-- ARGV[9]  prompt_tokens  input tokens the API counted (usageMetadata.promptTokenCount), or -1: replaces the
--                         admission's estimate in the project's token window
--
-- Returns {status, until_ms, counted, now_ms} where counted is 1 when a 429 started a new exhaustion
-- event, 0 when it belonged to an event already counted (or the outcome was not a 429); now_ms is the
-- Redis time at which the lease ended.
--
-- Invariants:
--   * a 429 counts once per event: a report for a lease issued before the key was last benched (its lease
--     number, a fencing token, is <= the key's bseq) does not count again (several workers that saw one
--     burst of 429s bench the key once);
--   * exhausted and failed states are never overwritten by a success (a late success cannot un-bench a key);
--   * per-minute 429: benched max(exhausted_wait, retryDelay), or just retryDelay when the project's limits
--     are configured (admission already paces it: a stray 429 is timing, not an unknown quota); after
--     max_exhausted_retries consecutive
--     events, fully exhausted for fully_exhausted_wait; per-day 429 (or limit 0): benched until the next
--     Pacific midnight, whatever retryDelay says;
--   * a 429 benches every key of the same project (they share one quota);
--   * invalid keys become FAILED_INIT and stay there until an operator resets them.

local lid, key_id, issued, outcome = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local lseq = tonumber(lid) or 0
local retry_after, quota_kind = tonumber(ARGV[5]), ARGV[6]
local worker_cool, day_off = tonumber(ARGV[7]), tonumber(ARGV[8])

local actual_tokens = tonumber(ARGV[9]) or -1

local now = now_ms()
local released = release_lease(lid, now, worker_cool)
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
  if quota_kind == 'day' or quota_kind == 'limit_zero' then
    st, untl = 'FULLY_EXHAUSTED', day_end(now, day_off)
  elseif kx.exh >= kx.maxr then
    st, untl = 'FULLY_EXHAUSTED', now + kx.fwait
  elseif quota_kind == 'minute' and retry_after >= 0 and redis.call('SISMEMBER', P .. 'limited', kx.proj) == 1 then
    st, untl = 'TEMPORARILY_EXHAUSTED', now + retry_after
  else
    st, untl = 'TEMPORARILY_EXHAUSTED', now + math.max(kx.ewait, retry_after)
  end
  if kx.st == 'FAILED_INIT' then st, untl = 'FAILED_INIT', 0 end
  kx.st, kx.untl = st, untl
  kx.bseq = tonumber(redis.call('GET', P .. 'seq') or '0')
  redis.call('HSET', kx.kk, 'st', st, 'until', untl, 'exh', kx.exh, 'texh', kx.texh, 'bench', now, 'bseq', kx.bseq)
end

if outcome == 'success' or outcome == 'persistent' then
  local fields = {'last', math.max(k.last, now)}
  if outcome == 'success' and lseq > k.bseq and k.exh > 0 then
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
  if lseq <= k.bseq then
    redis.call('HINCRBY', stats, 'r429_duplicate', 1)
    place(k, now)
    return {k.st, k.untl, 0, now}
  end
  bench(k)
  place(k, now)
  -- keys of the same project share the quota: bench them for the same event, once each
  if k.proj ~= k.id then
    local siblings = redis.call('SMEMBERS', P .. 'projkeys:' .. k.proj)
    for _, sid in ipairs(siblings) do
      if sid ~= k.id then
        local s = load_key(sid)
        if s then
          refresh(s, now)
          if lseq > s.bseq and s.st ~= 'FAILED_INIT' then
            bench(s)
            place(s, now)
          end
        end
      end
    end
  end
  return {k.st, k.untl, 1, now}
elseif outcome == 'invalid_key' then
  k.st, k.untl = 'FAILED_INIT', 0
  redis.call('HSET', k.kk, 'st', 'FAILED_INIT', 'until', 0)
  place(k, now)
  return {'FAILED_INIT', 0, 0, now}
end
-- transient: the key is released untouched (its admission cooldown `nb` still applies)
place(k, now)
return {k.st, k.untl, 0, now}
