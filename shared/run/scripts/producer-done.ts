import { runPrelude } from './prelude.js';

/**
 * ARGV[2] producer id, ARGV[3] incarnation, ARGV[4] jobs it saw acknowledged, ARGV[5] of those,
 * how many no shard holds (Redis lost acknowledged writes: a restart that rolled back, or a
 * failover), ARGV[6] 'stopped' when a signal ended it before its planned jobs. Marks it done and returns its state ('lost' or 'superseded' when too late); the join
 * check follows as its own step.
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const producerDoneLua =
  runPrelude +
  /* lua */ `
local rec = load_producer(ARGV[2])
if not rec then return redis.error_reply('NO_PRODUCER') end
if (tonumber(rec.incarnation) or 1) ~= tonumber(ARGV[3]) then return 'superseded' end
if rec.state == 'running' then
  rec.state = 'done'
  rec.doneAt = now_ms()
  rec.produced = tonumber(ARGV[4])
  if tonumber(ARGV[5]) > 0 then rec.lostAcks = tonumber(ARGV[5]) end
  if ARGV[6] == 'stopped' then rec.stoppedEarly = true end
  save_producer(ARGV[2], rec)
  redis.call('ZREM', LEASES, ARGV[2])
  redis.call('SREM', CREDITED, ARGV[2])
end
keep_ttl()
return rec.state
`;
