-- mark_sent.lua: re-stamp a lease's entry in its project's rate window with the moment the call is sent.
--
-- Admission records the window entry at admission time. When work with the leased key must happen before
-- the call (uploading files through the Files API can take minutes), the API counts the request much later
-- than we did; moving the entry to the send time keeps our window at least as strict as the API's.
--
-- KEYS[1]  pool prefix
-- ARGV[1]  lease_id
-- Returns 1 when an entry was moved, 0 when the lease is gone or its project has no rate window.
-- Invariant: an entry only ever moves later (never earlier), so the window can only get stricter.

local lid = ARGV[1]
local v = redis.call('HMGET', P .. 'lease:' .. lid, 'proj', 'model')
if not v[1] then return 0 end
local wk = P .. 'win:' .. v[1] .. '|' .. v[2]
local now = now_ms()
local moved = redis.call('ZADD', wk, 'XX', 'GT', 'CH', now, lid)
redis.call('ZADD', P .. 'tokz:' .. v[1] .. '|' .. v[2], 'XX', 'GT', now, lid)
return moved
