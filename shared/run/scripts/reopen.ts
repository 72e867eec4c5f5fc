import { shardPrelude } from './prelude.js';

/**
 * A job marked counted (COUNTED_MARK) is about to run again: it was put back to work (a retry from
 * Bull Board or job.retry(), with or without fresh attempt counters). KEYS[FIXED+1] its hash; ARGV[1]
 * job id. Decided by the run's own record of the id (cvAcct), never by BullMQ's counters: re-opened
 * while the shard is open (its old outcome taken back), or recorded as work after the join.
 * Returns 'open' (still unfinished), 'reopened', 'after-join', 'uncounted' or 'gone' (no such run).
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const reopenLua =
  shardPrelude +
  /* lua */ `
local id, jk = ARGV[1], KEYS[FIXED + 1]
if not PREFIX then return 'gone' end
if not owned(id) then return 'uncounted' end
if redis.call('SISMEMBER', OPEN, id) == 1 then return 'open' end
local mark = redis.call('HGET', jk, 'cvAcct')
if mark ~= 'completed' and mark ~= 'failed' and mark ~= 'cancelled' then return 'uncounted' end
if redis.call('HEXISTS', SMETA, 'closedAt') == 1 then
  redis.call('HSET', jk, 'cvAcct', 'after-join')
  redis.call('HINCRBY', SMETA, 'afterJoin', 1)
  keep_ttl()
  return 'after-join'
end
redis.call('HINCRBY', SMETA, mark, -1)
redis.call('HDEL', jk, 'cvAcct', 'cvReconciled')
redis.call('HINCRBY', SMETA, 'reopened', 1)
redis.call('SADD', OPEN, id)
return 'reopened'
`;
