import { shardPrelude } from './prelude.js';

/**
 * Marks one job cancelled on its shard. KEYS[FIXED+1] the job's hash; ARGV[1] job id. Returns
 * 'unknown' (no such job on this shard: the caller asks the next one), 'finished' (already terminal:
 * a no-op), 'after-join' (put back to work after the run joined: not the run's to cancel), or
 * 'cancelling' (marked: the caller removes it if it has not started, else tells whoever holds it to
 * abort it). The job is looked for first: a shard that closed says nothing about another's jobs.
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const cancelJobLua =
  shardPrelude +
  /* lua */ `
local id, jk = ARGV[1], KEYS[FIXED + 1]
if not owned(id) then return 'unknown' end
local open = redis.call('SISMEMBER', OPEN, id) == 1
if redis.call('EXISTS', jk) == 0 then
  if not open then return 'unknown' end
elseif redis.call('HEXISTS', jk, 'finishedOn') == 1 then
  return 'finished'
elseif not open and redis.call('HEXISTS', SMETA, 'closedAt') == 1 then
  return 'after-join'
end
redis.call('SADD', CANCELLED, id)
keep_ttl()
return 'cancelling'
`;
