-- status.lua: a consistent snapshot of the pool, after time-based recovery.
--
-- KEYS[1]  pool prefix
-- ARGV     (none)
-- Returns {now_ms, {id, field, value, ...}..., stats as {field, value, ...}}: for every registered key its
-- hash fields plus "leases" (active lease count), "lease_exp" (earliest lease expiry, 0 when none) and
-- "lease_owner" (the holder of that lease), and the
-- "gate" (the latest spacing gate of any processor: the earliest time the most recently spaced processor may
-- call again) as a pseudo-key entry named "__gate__" with field "fleet".
-- Reaps expired leases first, so the snapshot never shows a dead worker's lease.

local now = now_ms()
reap(now)
local out = {now}
local ids = redis.call('SMEMBERS', P .. 'ids')
table.sort(ids)
for _, id in ipairs(ids) do
  local k = load_key(id)
  if k then
    refresh(k, now)
    place(k, now)
    local row = redis.call('HGETALL', k.kk)
    table.insert(row, 1, id)
    local klk = P .. 'kl:' .. id
    table.insert(row, 'leases'); table.insert(row, redis.call('ZCARD', klk))
    local e = redis.call('ZRANGE', klk, 0, 0, 'WITHSCORES')
    table.insert(row, 'lease_exp'); table.insert(row, e[2] or '0')
    local owner = ''
    if e[1] then owner = redis.call('HGET', P .. 'lease:' .. e[1], 'owner') or '' end
    table.insert(row, 'lease_owner'); table.insert(row, owner)
    table.insert(out, row)
  end
end
redis.call('ZREMRANGEBYSCORE', P .. 'gates', '-inf', now - 3600000)
local last_gate = redis.call('ZRANGE', P .. 'gates', -1, -1, 'WITHSCORES')
table.insert(out, {'__gate__', 'fleet', last_gate[2] or '0'})
table.insert(out, redis.call('HGETALL', P .. 'stats'))
return out
