import { runPrelude } from './prelude.js';

/**
 * ARGV[2] consumer id or '*', ARGV[3] the cancel event (JSON) to publish.
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const requestCancelLua =
  runPrelude +
  /* lua */ `
if redis.call('EXISTS', META) == 0 then return 0 end
redis.call('SADD', CANCEL, ARGV[2])
keep_ttl()
redis.call('PUBLISH', ARGV[1], ARGV[3])
return 1
`;
