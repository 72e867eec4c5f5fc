import { shardPrelude } from './prelude.js';

/**
 * Pairs (job id, 'completed'|'failed'|'cancelled') from ARGV[1]; KEYS[FIXED + i] the hash of entry i.
 * Counts each job once: when it leaves the open set. A job put back to work before its report
 * arrived (it is no longer finished) stays open for its new outcome. A counted job still in BullMQ
 * is marked (the 'cvAcct' field, and COUNTED_MARK in its data, which a consumer reads when the job is
 * taken again) and listed for conveyor's trimming. An id of another creation of the run id is
 * ignored. Returns {counted, duplicates, 'closed', totals, trim} or {counted, duplicates, 'open',
 * unfinished count, trim}, trim '1' when a counted list is past its keep; {0, 0, 'gone', '0', '0'}
 * when the run is gone.
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const recordFinishedLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return {0, 0, 'gone', '0', '0'} end
local counted, dup, trim = 0, 0, false
-- Outcome counts are added once per call, not once per job.
local tally = {}
for i = 1, #ARGV / 2 do
  local id, outcome = ARGV[2 * i - 1], ARGV[2 * i]
  local jk = KEYS[FIXED + i]
  if not owned(id) then
    -- a job of an earlier run with this run id: not this run's to count
  elseif redis.call('SREM', OPEN, id) == 1 then
    -- One read: BullMQ stores 'name' with every job, so no name means the job is gone.
    local job = redis.call('HMGET', jk, 'name', 'finishedOn', 'data')
    if job[1] and not job[2] then
      -- put back to work since it finished: it stays open for its new outcome
      redis.call('SADD', OPEN, id)
    else
      if job[1] then
        redis.call('HSET', jk, 'cvAcct', outcome, 'data', counted_data(job[3]))
        if mark_counted(id, outcome) then trim = true end
      end
      tally[outcome] = (tally[outcome] or 0) + 1
      counted = counted + 1
    end
  else
    local mark = redis.call('HGET', jk, 'cvAcct')
    if mark and redis.call('HDEL', jk, 'cvReconciled') == 1 then
      -- the join check already counted it from BullMQ's record; this late report confirms it
    elseif mark == 'after-join' then
      redis.call('HSET', jk, 'cvAcct', outcome)
    elseif outcome == 'cancelled' and redis.call('SISMEMBER', CANCELLED, id) == 1 then
      -- a cancel reported by both its sides (a sweep removed the job a consumer had just refused):
      -- decided once, counted once, and no redelivery to warn about
    else
      dup = dup + 1
    end
  end
end
for outcome, n in pairs(tally) do redis.call('HINCRBY', SMETA, outcome, n) end
if dup > 0 then redis.call('HINCRBY', SMETA, 'duplicateFinishes', dup) end
keep_ttl()
local open = redis.call('SCARD', OPEN)
local trimmed = trim and '1' or '0'
if open == 0 and redis.call('HGET', SMETA, 'producersFinished') == '1' then
  local closed = close(now_ms(), redis.call('HGET', SMETA, 'pendingRetentionMs') or '0')
  return {counted, dup, closed[1], closed[2], trimmed}
end
return {counted, dup, 'open', tostring(open), trimmed}
`;
