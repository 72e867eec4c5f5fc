import { runPrelude } from './prelude.js';

/**
 * The run's half of the distributed queue.join(). Costs O(1) in the number of producers: counts,
 * plus the few leases that just ran out. Returns {reason, detail, retention ms, cancelled ('1' when
 * someone cancelled the run), instances to settle...}: 'producers-finished' once every expected
 * producer registered and finished (done, or lost when its lease ran out) and every dead instance is
 * settled (for ever after: all three are final), else why not. A cancelled run no longer waits for
 * producers that never registered (registering is refused after the cancel). The instances listed
 * must be settled on every shard (then `settledRun`), whatever the reason. ARGV[2] the run id: a run
 * whose keys are gone ('no-run') leaves the pending runs.
 *
 * A run waiting for producers that never registered, with none running, cannot move by itself. The
 * checks that find it so keep a clock, restarted whenever another producer registers; once it has run
 * for the abandon time (ARGV[3] ms; '' for the run's retention; 0 for never) the run is abandoned:
 * marked with why, out of the pending runs, its keys given the retention, and 'abandoned-now' returned
 * (once; 'abandoned' after).
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const checkRunLua =
  runPrelude +
  /* lua */ `
-- Waiting for producers that never registered, with none running: true once that has lasted the
-- abandon time on the clock kept here (started by the first check that finds it so, restarted by a
-- new registration, stopped by a running or unsettled producer or a cancel).
local function stalled_too_long(now, stalled, registered, retention)
  if not stalled then
    redis.call('HDEL', META, 'stalledSince', 'stalledRegistered')
    return false
  end
  local clock = redis.call('HMGET', META, 'stalledSince', 'stalledRegistered')
  if not clock[1] or tonumber(clock[2]) ~= registered then
    redis.call('HSET', META, 'stalledSince', now, 'stalledRegistered', registered)
    return false
  end
  local abandon_ms = tonumber(ARGV[3]) or tonumber(retention)
  return abandon_ms > 0 and now - tonumber(clock[1]) >= abandon_ms
end

local state = redis.call('HGET', META, 'state')
if not state then
  -- Its keys are gone (expired, evicted, lost in a restart): nothing is left for a checker to check.
  redis.call('ZREM', PENDING, ARGV[2])
  return {'no-run', '0', '0', '0'}
end
if state == 'joined' then return {'joined', redis.call('HGET', META, 'joinedAt'), '0', '0'} end
if state == 'abandoned' then return {'abandoned', redis.call('HGET', META, 'abandonedAt'), '0', '0'} end
local now = now_ms()
observe(now)
local cancelled = tostring(redis.call('HEXISTS', META, 'cancelledAt'))
for _, pid in ipairs(redis.call('ZRANGEBYSCORE', LEASES, '-inf', now, 'LIMIT', 0, 100)) do
  lose_producer(pid, now)
end
local retention = redis.call('HGET', META, 'retentionMs') or '0'
local result
local expected = tonumber(redis.call('HGET', META, 'expectedProducers'))
local registered = redis.call('HLEN', PRODUCERS)
local running = redis.call('ZCARD', LEASES)
local unsettled = redis.call('SCARD', UNSETTLED)
-- (with a dead instance still to settle, the check settles it first: a fenced zombie writes nothing)
local stalled = registered < expected and cancelled == '0' and running == 0 and unsettled == 0
if stalled_too_long(now, stalled, registered, retention) then
  local waited = now - tonumber(redis.call('HGET', META, 'stalledSince'))
  redis.call('HSET', META, 'state', 'abandoned', 'abandonedAt', now, 'abandonedReason',
    'producers-missing', 'abandonedMissing', expected - registered, 'abandonedAfterMs', waited)
  redis.call('HDEL', META, 'stalledSince', 'stalledRegistered')
  redis.call('ZREM', PENDING, ARGV[2])
  if tonumber(retention) > 0 then redis.call('ZADD', EXPIRIES, now + tonumber(retention), ARGV[2]) end
  keep_ttl()
  redis.call('PUBLISH', ARGV[1], cjson.encode({type = 'abandoned', abandonedAt = now}))
  return {'abandoned-now', tostring(now), retention, '0'}
end
if registered < expected and cancelled == '0' then
  result = {'producers-missing', tostring(expected - registered), retention, cancelled}
elseif running > 0 then
  result = {'producers-running', tostring(running), retention, cancelled}
elseif unsettled > 0 then
  result = {'producers-settling', tostring(unsettled), retention, cancelled}
else
  return {'producers-finished', '0', retention, cancelled}
end
for _, id in ipairs(redis.call('SRANDMEMBER', UNSETTLED, 50)) do table.insert(result, id) end
return result
`;
