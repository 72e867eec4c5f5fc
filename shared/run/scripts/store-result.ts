import { shardPrelude } from './prelude.js';

/**
 * Keeps a completed job's return value for the run's results (a run created with collectResults).
 * ARGV[1] job id, ARGV[2] the value (JSON), ARGV[3] the most bytes one job's value may take, ARGV[4]
 * the most all of the run's values on this shard may take. A value past either bound is refused
 * (RESULT_TOO_LARGE / RESULTS_FULL with the sizes), and nothing is stored. A retried job's value
 * replaces its earlier one. Returns the shard's result bytes.
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const storeResultLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return redis.error_reply('NO_RUN') end
if not owned(ARGV[1]) then return 0 end
local size = string.len(ARGV[2])
if size > tonumber(ARGV[3]) then return redis.error_reply('RESULT_TOO_LARGE ' .. size .. ' ' .. ARGV[3]) end
local old = redis.call('HSTRLEN', RESULTS, ARGV[1])
local total = (tonumber(redis.call('HGET', SMETA, 'resultBytes')) or 0) - old + size
if total > tonumber(ARGV[4]) then return redis.error_reply('RESULTS_FULL ' .. total .. ' ' .. ARGV[4]) end
redis.call('HSET', RESULTS, ARGV[1], ARGV[2])
redis.call('HSET', SMETA, 'resultBytes', total)
keep_ttl()
return total
`;
