import { runPrelude } from './prelude.js';

/**
 * ARGV[2] callback name, ARGV[3] its new state: 'delivered' (from 'pending', once its job is in the
 * queue), 'started' (its job is running), or its job's final 'completed' or 'failed'. A state never
 * moves back. With nothing left pending, the run leaves the outbox. Returns the state now recorded.
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const callbackStateLua =
  runPrelude +
  /* lua */ `
local field = 'cb:' .. ARGV[2]
local order = {pending = 1, delivered = 2, started = 3, completed = 4, failed = 4}
local current = redis.call('HGET', META, field)
if not current or current == 'skipped' then return current or false end
if (order[ARGV[3]] or 0) > (order[current] or 0) then
  redis.call('HSET', META, field, ARGV[3])
  current = ARGV[3]
end
local callbacks = redis.call('HGET', META, 'callbacks')
local left = 0
if callbacks then
  for _, cb in ipairs(cjson.decode(callbacks)) do
    if redis.call('HGET', META, 'cb:' .. cb.name) == 'pending' then left = left + 1 end
  end
end
if left == 0 then
  redis.call('ZREM', CALLBACKS_DUE, redis.call('HGET', META, 'runId'))
  redis.call('HDEL', META, 'cbClaim')
end
keep_ttl()
redis.call('PUBLISH', ARGV[1], cjson.encode({type = 'callback', name = ARGV[2], state = current}))
return current
`;
