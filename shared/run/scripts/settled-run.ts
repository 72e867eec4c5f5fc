import { runPrelude } from './prelude.js';

/**
 * ARGV[2..] instances every shard has settled.
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const settledRunLua =
  runPrelude +
  /* lua */ `
for i = 2, #ARGV do redis.call('SREM', UNSETTLED, ARGV[i]) end
return 1
`;
