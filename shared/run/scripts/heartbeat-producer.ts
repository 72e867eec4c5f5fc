import { runPrelude } from './prelude.js';

/**
 * ARGV[2] producer id, ARGV[3] incarnation, ARGV[4] lease ms. Returns the producer's state
 * ('running' renews the lease; 'superseded' when a later incarnation registered).
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const heartbeatProducerLua =
  runPrelude +
  /* lua */ `
local rec = load_producer(ARGV[2])
if not rec then return 'missing' end
if (tonumber(rec.incarnation) or 1) ~= tonumber(ARGV[3]) then return 'superseded' end
if rec.state ~= 'running' then return rec.state end
local now = now_ms()
observe(now)
rec.heartbeatAt = now
save_producer(ARGV[2], rec)
redis.call('SREM', CREDITED, ARGV[2])
redis.call('ZADD', LEASES, now + tonumber(ARGV[4]), ARGV[2])
if redis.call('HEXISTS', META, 'cancelledAt') == 1 then return 'cancelled' end
return 'running'
`;
