import { runPrelude } from './prelude.js';

/**
 * Marks the run cancelled: producers stop (their heartbeat says so), registering is refused, and
 * every join check cancels the jobs not yet started. The caller then tells every process on the
 * events channel. Returns {'cancelled', at} the first time, {'already', at} after, {'joined',
 * joinedAt} for a run that has joined (a no-op).
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const cancelRunLua =
  runPrelude +
  /* lua */ `
local state = redis.call('HGET', META, 'state')
if not state then return redis.error_reply('NO_RUN') end
if state == 'joined' then return {'joined', redis.call('HGET', META, 'joinedAt')} end
local at = redis.call('HGET', META, 'cancelledAt')
if at then return {'already', at} end
local now = now_ms()
redis.call('HSET', META, 'cancelledAt', now)
return {'cancelled', tostring(now)}
`;
