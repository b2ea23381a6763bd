-- configure.lua: make the pool's configuration of some keys (and their projects' limits) what a manager or a
-- worker says, in one atomic step, without ever silently overriding someone's explicit settings.
--
-- KEYS[1]  pool prefix
-- ARGV[1]  mode     default  - only add keys the pool does not know (a manager that only names keys, a worker
--                              announcing the keys it holds); known keys are used as they are
--                   explicit - the caller's settings for its keys and their projects' limits; a key or project
--                              whose settings were set explicitly by someone else and differ is a conflict:
--                              nothing is written and the differences are returned
--                   replace  - the caller's settings win, and Redis is made to match them: keys not listed are
--                              pruned, limits of projects no remaining key belongs to are removed
-- ARGV[2]  by       who sets this (host:pid:program), shown in the key table
-- ARGV[3]  epoch    a random id, written as the pool's epoch when it has none (first registration, or
--                   after Redis lost its data)
-- ARGV[4]  config   JSON: {"keys": [[id, cat, cool_ms, ewait_ms, fwait_ms, maxr, maxl, project, fp], ...],
--                          "limits": {project: {"rpm": n, "rpm|<model>": n, ...}, ...}}  (limits: explicit and
--                          replace only; a project listed with {} has no limits)
-- ARGV[5]  replace_fp  "1" = accept a changed fingerprint (the secret was rotated)
-- ARGV[6]  held     "1" = the caller holds these keys' secrets (a worker): add the ids to `held`
--
-- Returns {1, epoch} when applied; {0, "fingerprint", id, existing_fp} when this host's secret for an id differs
-- from the registered one; {0, "settings", what, field, pool_value, new_value, set_by, ...} (five entries per
-- difference) when explicit settings conflict.
-- Invariants:
--   * state fields (status, counts, leases, benches) are never reset by configuration;
--   * a key's src is "explicit" once an explicit or replace call set it; default calls never change it;
--   * after replace, ids/projkeys/limited hold exactly the listed keys, their projects and the given limits;
--   * explicit settings apply at once: a cooldown running under the old settings never outlasts the new one;
--   * every configured key is re-placed in ready/waiting.

local mode, by, epoch_cand = ARGV[1], ARGV[2], ARGV[3]
local cfg = cjson.decode(ARGV[4])
local replace_fp, held = ARGV[5] == '1', ARGV[6] == '1'
local now = now_ms()
local FIELDS = {'cat', 'cool', 'ewait', 'fwait', 'maxr', 'maxl', 'proj'}

redis.call('SET', P .. 'epoch', epoch_cand, 'NX')
local epoch = redis.call('GET', P .. 'epoch')

local keys = cfg['keys'] or {}
local limits = cfg['limits'] or {}
if type(limits) ~= 'table' then limits = {} end

-- 1. fingerprints
for _, e in ipairs(keys) do
  local fp = e[9]
  if fp and fp ~= '' then
    local old = redis.call('HGET', P .. 'key:' .. e[1], 'fp')
    if old and old ~= '' and old ~= fp and not replace_fp then
      return {0, 'fingerprint', e[1], old}
    end
  end
end

-- 2. explicit settings of someone else that differ
if mode == 'explicit' then
  local diffs = {}
  for _, e in ipairs(keys) do
    local kk = P .. 'key:' .. e[1]
    local cur = redis.call('HMGET', kk, 'src', 'by', unpack(FIELDS))
    if cur[1] == 'explicit' then
      for i, f in ipairs(FIELDS) do
        local mine = tostring(e[i + 1])
        local theirs = cur[i + 2] or ''
        if mine ~= theirs then
          for _, x in ipairs({e[1], f, theirs, mine, cur[2] or ''}) do diffs[#diffs + 1] = x end
        end
      end
    end
  end
  for project, lim in pairs(limits) do
    local lk = P .. 'proj:' .. project
    if redis.call('HGET', lk, '__src') == 'explicit' then
      local cur = {}
      local flat = redis.call('HGETALL', lk)
      for i = 1, #flat, 2 do
        if string.sub(flat[i], 1, 2) ~= '__' then cur[flat[i]] = flat[i + 1] end
      end
      local names = {}
      for f, _ in pairs(cur) do names[f] = true end
      for f, _ in pairs(lim) do names[f] = true end
      local sorted = {}
      for f, _ in pairs(names) do sorted[#sorted + 1] = f end
      table.sort(sorted)
      for _, f in ipairs(sorted) do
        local theirs = cur[f] or ''
        local mine = lim[f] and tostring(lim[f]) or ''
        if theirs ~= mine then
          for _, x in ipairs({'project ' .. project, f, theirs, mine, redis.call('HGET', lk, '__by') or ''}) do
            diffs[#diffs + 1] = x
          end
        end
      end
    end
  end
  if #diffs > 0 then
    local out = {0, 'settings'}
    for _, x in ipairs(diffs) do out[#out + 1] = x end
    return out
  end
end

-- 3. apply
local listed = {}
for _, e in ipairs(keys) do
  local id = e[1]
  listed[id] = true
  local kk = P .. 'key:' .. id
  local known = redis.call('HEXISTS', kk, 'cat') == 1
  if mode ~= 'default' or not known then
    local old_proj = redis.call('HGET', kk, 'proj')
    if old_proj and old_proj ~= '' and old_proj ~= e[8] then
      redis.call('SREM', P .. 'projkeys:' .. old_proj, id)
    end
    redis.call('HSET', kk, 'cat', e[2], 'cool', e[3], 'ewait', e[4], 'fwait', e[5], 'maxr', e[6], 'maxl', e[7],
               'proj', e[8], 'src', mode == 'default' and 'default' or 'explicit', 'by', by, 'at', now)
    if e[8] ~= '' then redis.call('SADD', P .. 'projkeys:' .. e[8], id) end
  end
  if e[9] and e[9] ~= '' then redis.call('HSET', kk, 'fp', e[9]) end
  if held then redis.call('SADD', P .. 'held', id) end
  redis.call('HSETNX', kk, 'st', 'AVAILABLE')
  redis.call('SADD', P .. 'ids', id)
  local k = load_key(id)
  refresh(k, now)
  if mode ~= 'default' then
    -- a cooldown already running under the old settings never outlasts the new one (free -> paid: no 30 s rest)
    local cool = tonumber(e[3]) or 0
    if k.st == 'COOLDOWN' and k.untl > k.last + cool then
      if k.last + cool > now then k.untl = k.last + cool else k.st, k.untl = 'AVAILABLE', 0 end
      redis.call('HSET', kk, 'st', k.st, 'until', k.untl)
    end
    if k.nb > k.last + cool then
      k.nb = k.last + cool
      redis.call('HSET', kk, 'nb', k.nb)
    end
  end
  place(k, now)
end

if mode ~= 'default' then
  for project, lim in pairs(limits) do
    local lk = P .. 'proj:' .. project
    redis.call('DEL', lk)
    local fields = {}
    for f, n in pairs(lim) do fields[#fields + 1] = f; fields[#fields + 1] = n end
    if #fields > 0 then
      redis.call('HSET', lk, '__src', 'explicit', '__by', by, unpack(fields))
      redis.call('SADD', P .. 'limited', project)
    else
      redis.call('SREM', P .. 'limited', project)
    end
  end
end

if mode == 'replace' then
  local projects = {}
  for _, id in ipairs(redis.call('SMEMBERS', P .. 'ids')) do
    local kk = P .. 'key:' .. id
    if not listed[id] then
      local proj = redis.call('HGET', kk, 'proj')
      if proj and proj ~= '' then redis.call('SREM', P .. 'projkeys:' .. proj, id) end
      redis.call('SREM', P .. 'ids', id)
      redis.call('ZREM', P .. 'ready', id)
      redis.call('ZREM', P .. 'waiting', id)
      redis.call('DEL', kk)
    else
      local proj = redis.call('HGET', kk, 'proj')
      if not proj or proj == '' then proj = id end
      projects[proj] = true
    end
  end
  for _, project in ipairs(redis.call('SMEMBERS', P .. 'limited')) do
    if not projects[project] or not limits[project] then
      redis.call('DEL', P .. 'proj:' .. project)
      redis.call('SREM', P .. 'limited', project)
    end
  end
end
return {1, epoch}
