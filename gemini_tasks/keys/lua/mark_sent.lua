-- mark_sent.lua: re-stamp a lease's entries in its project's rate and token windows with the moment the call
-- is sent.
--
-- Admission records the window entries at admission time. When work with the leased key must happen before
-- the call (uploading files through the Files API can take minutes), the API counts the request much later
-- than we did; moving the entries to the send time keeps our windows at least as strict as the API's.
--
-- KEYS[1]  pool prefix
-- ARGV[1]  lease_id
-- Returns 1 when the lease counts in a rate window (its entry now stands at the send time), 0 when the lease
-- is gone or its project has no rate window.
-- Invariants:
--   * an entry only ever moves later (never earlier), so the windows can only get stricter;
--   * while the lease lives, its entries are put back when they were trimmed from the window (older than
--     window + margin) or the window's key expired during a slow upload: the real send is always counted.

local lid = ARGV[1]
local v = redis.call('HMGET', P .. 'lease:' .. lid, 'proj', 'model', 'w', 'tk', 'wx')
if not v[1] then return 0 end
local now = now_ms()
local ttl = tonumber(v[5]) or 180000
local moved = 0
if v[3] == '1' then
  local wk = P .. 'win:' .. v[1] .. '|' .. v[2]
  redis.call('ZADD', wk, 'GT', now, lid)
  redis.call('PEXPIRE', wk, ttl)
  moved = 1
end
local tk = tonumber(v[4]) or 0
if tk > 0 then
  local zk = P .. 'tokz:' .. v[1] .. '|' .. v[2]
  local hk = P .. 'tokh:' .. v[1] .. '|' .. v[2]
  redis.call('ZADD', zk, 'GT', now, lid)
  if redis.call('HSETNX', hk, lid, tk) == 1 then redis.call('HINCRBY', hk, '__sum', tk) end
  redis.call('PEXPIRE', zk, ttl)
  redis.call('PEXPIRE', hk, ttl)
end
return moved
