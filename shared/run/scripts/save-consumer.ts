import { runPrelude, WAITING_CONSUMER_TTL_MS } from './prelude.js';

/**
 * ARGV[2] consumer id, ARGV[3] its record (JSON). The heartbeat time is Redis's. Returns it.
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const saveConsumerLua =
  runPrelude +
  /* lua */ `
local now = now_ms()
redis.call('HSET', CONSUMERS, ARGV[2], ARGV[3])
redis.call('ZADD', BEATS, now, ARGV[2])
if redis.call('EXISTS', META) == 0 then
  -- Waiting for a run not created yet (or long gone): shown in status, but no key lives for ever.
  redis.call('PEXPIRE', CONSUMERS, ${WAITING_CONSUMER_TTL_MS})
  redis.call('PEXPIRE', BEATS, ${WAITING_CONSUMER_TTL_MS})
  return now
end
if redis.call('HGET', META, 'state') ~= 'joined' then
  redis.call('PERSIST', CONSUMERS)
  redis.call('PERSIST', BEATS)
end
keep_ttl()
return now
`;
