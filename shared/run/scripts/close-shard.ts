import { shardPrelude } from './prelude.js';

/**
 * The shard's half of the join, called once the run has every producer finished. ARGV[1] the run's
 * retention ms, ARGV[2] how often (ms) one reconcile pass may run across all processes, ARGV[3] how
 * many re-opens the run has announced for this shard. Returns {'closed', totals}, {'open', unfinished
 * count, reconcile cursor or '' when no pass is due}, or {'behind', '0', ''} when an announced re-open
 * is not applied here yet (the caller applies it, then asks again).
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const closeShardLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return redis.error_reply('NO_RUN') end
-- A re-open the run announced for this shard and nobody applied yet: the caller applies it first.
if tonumber(redis.call('HGET', SMETA, 'reopensApplied') or '0') < tonumber(ARGV[3]) then
  return {'behind', '0', ''}
end
if redis.call('HEXISTS', SMETA, 'closedAt') == 1 then
  keep_ttl()
  return {'closed', redis.call('HGET', SMETA, 'closedTotals')}
end
redis.call('HSET', SMETA, 'producersFinished', 1, 'pendingRetentionMs', ARGV[1])
local now = now_ms()
local open = redis.call('SCARD', OPEN)
if open == 0 then return close(now, ARGV[1]) end
local last = tonumber(redis.call('HGET', SMETA, 'reconciledAt') or '0')
if now - last < tonumber(ARGV[2]) then return {'open', tostring(open), ''} end
redis.call('HSET', SMETA, 'reconciledAt', now)
return {'open', tostring(open), redis.call('HGET', SMETA, 'reconcileCursor') or '0'}
`;
