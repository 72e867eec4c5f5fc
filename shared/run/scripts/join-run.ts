import { runPrelude } from './prelude.js';

/**
 * ARGV[2] how many re-opens the run had announced per shard (JSON array) when the shards were read,
 * ARGV[3..] every shard's close totals (JSON), as the shards returned them. Flips the run to joined
 * exactly once and records the totals; returns {'joined-now' | 'joined', joinedAt}, or
 * {'jobs-unfinished', '1'} when a re-open was announced since (those totals are not final).
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const joinRunLua =
  runPrelude +
  /* lua */ `
local state = redis.call('HGET', META, 'state')
if not state then return {'no-run', '0'} end
if state == 'joined' then return {'joined', redis.call('HGET', META, 'joinedAt')} end
local shards = tonumber(redis.call('HGET', META, 'shards') or '1')
if #ARGV - 2 ~= shards then return redis.error_reply('SHARDS_MISMATCH ' .. shards) end
-- A job re-opened since the shards were read (announceReopen): their totals are not final.
local read = cjson.decode(ARGV[2])
for i = 1, shards do
  if tonumber(redis.call('HGET', META, 'reopens:' .. (i - 1)) or '0') ~= read[i] then
    return {'jobs-unfinished', '1'}
  end
end
local sum = {produced = 0, completed = 0, failed = 0, removed = 0, cancelled = 0}
for i = 3, #ARGV do
  local t = cjson.decode(ARGV[i])
  for k, _ in pairs(sum) do sum[k] = sum[k] + (tonumber(t[k]) or 0) end
end
local now = now_ms()
local totals = cjson.encode({produced = sum.produced, completed = sum.completed, failed = sum.failed,
  removed = sum.removed, cancelled = sum.cancelled,
  lostProducers = tonumber(redis.call('HGET', META, 'lostProducers')) or 0})
redis.call('HSET', META, 'state', 'joined', 'joinedAt', now, 'totalsAtJoin', totals)
redis.call('ZREM', PENDING, redis.call('HGET', META, 'runId'))
-- The outbox: the run's callbacks become due in the same step that joins it, so a crash right
-- after cannot lose them; any process delivers them later (deliverCallbacks in callbacks.ts).
local callbacks = redis.call('HGET', META, 'callbacks')
if callbacks then
  local due = 0
  for _, cb in ipairs(cjson.decode(callbacks)) do
    if cb.when == 'success' and (sum.failed > 0 or sum.removed > 0 or sum.cancelled > 0) then
      redis.call('HSET', META, 'cb:' .. cb.name, 'skipped')
    else
      redis.call('HSET', META, 'cb:' .. cb.name, 'pending')
      due = due + 1
    end
  end
  if due > 0 then redis.call('ZADD', CALLBACKS_DUE, now, redis.call('HGET', META, 'runId')) end
end
local retention = tonumber(redis.call('HGET', META, 'retentionMs') or '0')
if retention > 0 then redis.call('ZADD', EXPIRIES, now + retention, redis.call('HGET', META, 'runId')) end
prune_index(now)
keep_ttl()
redis.call('PUBLISH', ARGV[1], cjson.encode({type = 'joined', joinedAt = now}))
return {'joined-now', tostring(now)}
`;
