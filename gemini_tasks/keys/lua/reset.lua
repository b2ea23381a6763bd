-- reset.lua: an operator puts a key back to AVAILABLE with its counters cleared (e.g. a fixed FAILED_INIT).
--
-- KEYS[1]  pool prefix
-- ARGV[1]  key id
-- Returns 1 when the key exists, 0 otherwise.
-- Invariant: the key is re-placed in ready/waiting, as after every state change.

local k = load_key(ARGV[1])
if not k then return 0 end
local now = now_ms()
redis.call('HSET', k.kk, 'st', 'AVAILABLE', 'until', 0, 'exh', 0, 'nb', 0, 'bench', 0)
k.st, k.untl, k.exh, k.nb = 'AVAILABLE', 0, 0, 0
place(k, now)
return 1
