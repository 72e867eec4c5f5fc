import { shardPrelude, CANCELLED_REASON } from './prelude.js';

/**
 * One bounded reconcile pass over open jobs whose consumer may have died before reporting them.
 * KEYS[FIXED+1] BullMQ's failed set, KEYS[FIXED+1+i] the hash of ARGV[3+i]; ARGV[1] the SSCAN cursor
 * to resume from next time, ARGV[2] the run's retention ms, ARGV[3] the grace (ms), ARGV[4..] open ids
 * the caller scanned.
 * A finished job is counted from BullMQ's record (cancelled when its failure is conveyor's cancel),
 * a vanished one as removed (cancelled when someone cancelled it), each only after it stayed that
 * way for a grace measured on Redis's clock (a live consumer's report takes milliseconds). conveyor
 * trims only counted jobs, so a vanished open job is one someone removed. Returns like closeShard,
 * plus '1' when a counted list is past its keep.
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const reconcileLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return redis.error_reply('NO_RUN') end
local now = now_ms()
local grace = tonumber(ARGV[3])
local CANCEL_MARK = '${CANCELLED_REASON}'
local trim = false
for i = 4, #ARGV do
  local id, jk = ARGV[i], KEYS[FIXED + i - 2]
  if redis.call('SISMEMBER', OPEN, id) == 1 then
    local gone = redis.call('EXISTS', jk) == 0
    local finished = (not gone) and redis.call('HEXISTS', jk, 'finishedOn') == 1
    if gone or finished then
      local since = tonumber(redis.call('HGET', SUSPECT, id))
      if not since then
        redis.call('HSET', SUSPECT, id, now)
      elseif since < now - grace then
        redis.call('SREM', OPEN, id)
        redis.call('HDEL', SUSPECT, id)
        if gone then
          local outcome = 'removed'
          if redis.call('SISMEMBER', CANCELLED, id) == 1 then outcome = 'cancelled' end
          redis.call('HINCRBY', SMETA, outcome, 1)
        else
          local outcome = 'completed'
          if redis.call('ZSCORE', KEYS[FIXED + 1], id) then
            outcome = 'failed'
            local reason = redis.call('HGET', jk, 'failedReason') or ''
            if string.sub(reason, 1, #CANCEL_MARK) == CANCEL_MARK then outcome = 'cancelled' end
          end
          local data = redis.call('HGET', jk, 'data')
          redis.call('HSET', jk, 'cvAcct', outcome, 'cvReconciled', 1, 'data', counted_data(data))
          redis.call('HINCRBY', SMETA, outcome, 1)
          redis.call('HINCRBY', SMETA, 'reconciled', 1)
          if mark_counted(id, outcome) then trim = true end
        end
      end
    else
      redis.call('HDEL', SUSPECT, id)
    end
  end
end
redis.call('HSET', SMETA, 'reconcileCursor', ARGV[1])
local open = redis.call('SCARD', OPEN)
local trimmed = trim and '1' or '0'
if open == 0 and redis.call('HGET', SMETA, 'producersFinished') == '1' then
  local closed = close(now, ARGV[2])
  return {closed[1], closed[2], '', trimmed}
end
return {'open', tostring(open), '', trimmed}
`;
