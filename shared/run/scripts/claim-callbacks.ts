import { runPrelude } from './prelude.js';

/**
 * Claims the delivery of a joined run's due callbacks. ARGV[2] the claimer's token, ARGV[3] the
 * claim's lease (ms), ARGV[4] the run id. Returns {'none'} when nothing is due (the run leaves the
 * outbox), {'gone'} when the run's keys are gone (it leaves the outbox too), {'busy'} while another
 * live claim holds it, else {'claimed', callbacks JSON, totals JSON, name...} with the names still
 * pending.
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const claimCallbacksLua =
  runPrelude +
  /* lua */ `
local state = redis.call('HGET', META, 'state')
if not state then
  -- Its keys expired (or were lost) before its callbacks were delivered: nothing is left to deliver.
  redis.call('ZREM', CALLBACKS_DUE, ARGV[4])
  return {'gone'}
end
local runId = redis.call('HGET', META, 'runId')
if state ~= 'joined' then return {'none'} end
local callbacks = redis.call('HGET', META, 'callbacks')
local pending = {}
if callbacks then
  for _, cb in ipairs(cjson.decode(callbacks)) do
    if redis.call('HGET', META, 'cb:' .. cb.name) == 'pending' then table.insert(pending, cb.name) end
  end
end
if #pending == 0 then
  redis.call('ZREM', CALLBACKS_DUE, runId)
  redis.call('HDEL', META, 'cbClaim')
  keep_ttl()
  return {'none'}
end
local now = now_ms()
local claim = redis.call('HGET', META, 'cbClaim')
if claim then
  local token, expiry = string.match(claim, '^(.*)@(%d+)$')
  if token ~= ARGV[2] and tonumber(expiry) > now then return {'busy'} end
end
redis.call('HSET', META, 'cbClaim', ARGV[2] .. '@' .. (now + tonumber(ARGV[3])))
keep_ttl()
local reply = {'claimed', callbacks, redis.call('HGET', META, 'totalsAtJoin')}
for _, name in ipairs(pending) do table.insert(reply, name) end
return reply
`;
