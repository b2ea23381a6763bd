-- renew.lua: a live holder extends its leases (the lease keeper calls this every few seconds while calls run).
--
-- Leases are issued with a short TTL (seconds) and renewed while their call runs, so a dead holder's keys,
-- max_workers slots and token reservations come back within one TTL whatever the call's own timeout, while a
-- call that legitimately runs for many minutes (Flex tier, slow uploads) keeps its lease as long as its
-- holder lives.
--
-- KEYS[1]  pool prefix
-- ARGV[1]  ttl            ms from now until each lease expires unless renewed again
-- ARGV[2..] lease ids     the holder's own leases (admission ids)
--
-- Returns {now_ms, exp_1, exp_2, ...}: per lease its new expiry, or 0 when the lease is gone (reported,
-- expired and reaped, or lost with Redis's data): the holder no longer holds it and must not treat the key
-- as its own; its later report is fenced (it frees nothing but its own, already-ended lease).
-- Invariants:
--   * renewal only extends (an expiry never moves earlier);
--   * an expired lease is never revived (reap runs first), so a key handed to another holder stays theirs;
--   * the processor slot is extended only while it is still this lease's (score BUSY + this lease's expiry).

local ttl = tonumber(ARGV[1])
local now = now_ms()
reap(now)
local out = {now}
for i = 2, #ARGV do
  local lid = ARGV[i]
  local lk = P .. 'lease:' .. lid
  local v = redis.call('HMGET', lk, 'key', 'exp', 'proc', 'slot')
  local old = tonumber(v[2] or '')
  if not v[1] or not old or old <= now then
    out[#out + 1] = 0
  else
    local exp = math.max(old, now + ttl)
    if exp > old then
      redis.call('HSET', lk, 'exp', exp)
      redis.call('PEXPIRE', lk, ttl + 86400000)
      redis.call('ZADD', P .. 'leases', 'XX', exp, lid)
      redis.call('ZADD', P .. 'kl:' .. v[1], 'XX', exp, lid)
      if v[3] and v[3] ~= '' then
        local pk = P .. 'proc:' .. v[3]
        if tonumber(redis.call('ZSCORE', pk, v[4]) or '0') == BUSY + old then
          redis.call('ZADD', pk, 'XX', BUSY + exp, v[4])
        end
      end
    end
    out[#out + 1] = exp
  end
end
return out
