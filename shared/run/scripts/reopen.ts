import { shardPrelude } from './prelude.js';

/**
 * A job marked counted (COUNTED_MARK) is about to run again: it was put back to work (a retry from
 * Bull Board or job.retry(), with or without fresh attempt counters). The run decides first
 * (announceReopen): work after the join once it has joined, else a numbered announcement per shard
 * that this script applies. Decided by the run's own records (its state, the job's cvAcct), never
 * by BullMQ's counters nor by whether this shard has closed: a shard closes before its run joins,
 * and until the run joins its totals are not final.
 *
 * ARGV[1] 'apply', then pairs (announcement number, job id), KEYS[FIXED+i] pair i's job hash: each
 * announcement is applied once, by the consumer that made it or by a join check that found it
 * pending (the consumer died in between); a counted job has its outcome taken back and is open again,
 * and a closed shard opens again. Or ARGV[1] 'after-join', ARGV[2] the job id, KEYS[FIXED+1] its hash.
 * Returns one outcome per job: 'open' (still unfinished), 'reopened', 'uncounted', 'applied' (applied
 * before), 'after-join'; {'gone'} when the run is gone.
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const reopenLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return {'gone'} end
local function counted_as(jk)
  local mark = redis.call('HGET', jk, 'cvAcct')
  if mark == 'completed' or mark == 'failed' or mark == 'cancelled' then return mark end
  return nil
end
if ARGV[1] == 'after-join' then
  local id, jk = ARGV[2], KEYS[FIXED + 1]
  if not owned(id) then return {'uncounted'} end
  if redis.call('SISMEMBER', OPEN, id) == 1 then return {'open'} end
  if not counted_as(jk) then return {'uncounted'} end
  redis.call('HSET', jk, 'cvAcct', 'after-join')
  redis.call('HINCRBY', SMETA, 'afterJoin', 1)
  keep_ttl()
  return {'after-join'}
end
local out, reopened = {}, false
for i = 1, (#ARGV - 1) / 2 do
  local n, id, jk = ARGV[2 * i], ARGV[2 * i + 1], KEYS[FIXED + i]
  if redis.call('HSETNX', SMETA, 'reopenApplied:' .. n, 1) == 0 then
    out[i] = 'applied'
  else
    redis.call('HINCRBY', SMETA, 'reopensApplied', 1)
    local mark = owned(id) and counted_as(jk)
    if owned(id) and redis.call('SISMEMBER', OPEN, id) == 1 then
      out[i] = 'open'
    elseif not mark then
      out[i] = 'uncounted'
    else
      redis.call('HINCRBY', SMETA, mark, -1)
      redis.call('HDEL', jk, 'cvAcct', 'cvReconciled')
      redis.call('HINCRBY', SMETA, 'reopened', 1)
      redis.call('SADD', OPEN, id)
      reopened = true
      out[i] = 'reopened'
    end
  end
end
if reopened and redis.call('HEXISTS', SMETA, 'closedAt') == 1 then
  -- closed before its run joined: the totals it closed with were not final, and its keys live on
  redis.call('HDEL', SMETA, 'closedAt', 'closedTotals')
  for i = 1, RUN_OWNED do redis.call('PERSIST', KEYS[i]) end
end
keep_ttl()
return out
`;
