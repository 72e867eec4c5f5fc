import { shardPrelude } from './prelude.js';

/**
 * A producer instance reports done. ARGV[1] instance, ARGV[2] how many of its jobs on this shard it
 * saw acknowledged. The instance is fenced here (a new put after done is refused: it could land after
 * the join); its put bitmap stays until the retention, so any send of a stored put is answered truly.
 * Returns how many of those the shard does not hold (recorded once as lostAcks, never hidden).
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const tallyProducerLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return redis.error_reply('NO_RUN') end
local missing = tonumber(ARGV[2]) - tonumber(redis.call('HGET', PRODUCED_BY, ARGV[1]) or '0')
if missing < 0 then missing = 0 end
if redis.call('HSETNX', SMETA, 'tallied:' .. ARGV[1], missing) == 1 and missing > 0 then
  redis.call('HINCRBY', SMETA, 'lostAcks', missing)
end
redis.call('SADD', FENCED, ARGV[1])
keep_ttl()
return tonumber(redis.call('HGET', SMETA, 'tallied:' .. ARGV[1]))
`;
