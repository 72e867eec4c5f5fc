import { runPrelude } from './prelude.js';

/**
 * ARGV[2] producer id, ARGV[3] JSON info {host,pid}, ARGV[4] lease ms. Registering an id that is
 * still running supersedes its earlier incarnation (settled and fenced on every shard). Returns
 * {Redis time, incarnation, the run's job id prefix}.
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const registerProducerLua =
  runPrelude +
  /* lua */ `
local state = redis.call('HGET', META, 'state')
if not state then return redis.error_reply('NO_RUN') end
if state == 'joined' then return redis.error_reply('JOINED') end
if state == 'abandoned' then return redis.error_reply('ABANDONED') end
if redis.call('HEXISTS', META, 'cancelledAt') == 1 then return redis.error_reply('CANCELLED') end
local now = now_ms()
local rec = load_producer(ARGV[2])
if rec then
  if rec.state ~= 'running' then return redis.error_reply('FINISHED ' .. rec.state) end
  redis.call('SADD', UNSETTLED, instance_of(rec))
  local info = cjson.decode(ARGV[3])
  rec.host = info.host
  rec.pid = info.pid
  rec.incarnation = (tonumber(rec.incarnation) or 1) + 1
  rec.restartedAt = now
else
  local expected = tonumber(redis.call('HGET', META, 'expectedProducers'))
  if redis.call('HLEN', PRODUCERS) >= expected then return redis.error_reply('FULL ' .. expected) end
  rec = cjson.decode(ARGV[3])
  rec.state = 'running'
  rec.produced = 0
  rec.startedAt = now
  rec.incarnation = 1
end
rec.heartbeatAt = now
save_producer(ARGV[2], rec)
redis.call('SREM', CREDITED, ARGV[2])
redis.call('ZADD', LEASES, now + tonumber(ARGV[4]), ARGV[2])
return {now, rec.incarnation, redis.call('HGET', META, 'idPrefix')}
`;
