-- store_result.lua: a worker stores a task's result in one round trip (gemini_tasks/worker/result_store.py).
--
-- Celery's Redis backend reads the stored result first (GET) and then writes it (SET + PUBLISH in MULTI/EXEC),
-- so that a late copy of a task never overwrites a SUCCESS. This script does the check, the write and the
-- publish at once.
--
-- KEYS[1]  the result key (celery-task-meta-<task id>)
-- ARGV[1]  the encoded result meta (JSON: the project accepts no other result serializer)
-- ARGV[2]  seconds to live (0: no expiry)
--
-- Returns 0 when a SUCCESS was already stored (nothing written, nothing published), 1 when written and published.
-- Invariants:
--   * a stored SUCCESS is never overwritten (the rule of Celery's _store_result), and no write can slip in
--     between the check and the write (the script is atomic);
--   * a stored value that is not JSON meta is overwritten, as Celery's decode failure would let it be.

local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta['status'] == 'SUCCESS' then return 0 end
end
local ttl = tonumber(ARGV[2]) or 0
if ttl > 0 then redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl) else redis.call('SET', KEYS[1], ARGV[1]) end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
