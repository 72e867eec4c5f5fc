import { runPrelude } from './prelude.js';

/**
 * A counted job is about to run again (see reopenLua): the run decides, in its own record, before its
 * shard is told. ARGV[2] the job's shard, ARGV[3] its id. Returns 'after-join' when the run has joined
 * (or was abandoned), 'gone' without a run, else the announcement's number on that shard: until that
 * shard has applied every announcement, no join check closes it, and a join whose shards were read
 * before an announcement is refused (joinRunLua).
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const announceReopenLua =
  runPrelude +
  /* lua */ `
local state = redis.call('HGET', META, 'state')
if not state then return 'gone' end
if state ~= 'pending' then return 'after-join' end
local n = redis.call('HINCRBY', META, 'reopens:' .. ARGV[2], 1)
redis.call('HSET', META, 'reopen:' .. ARGV[2] .. ':' .. n, ARGV[3])
return tostring(n)
`;
