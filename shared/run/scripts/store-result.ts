import { shardPrelude } from './prelude.js';

/**
 * Keeps how a job ended for the run's results (a run created with collectResults): a completed job's
 * return value, or a failed or cancelled job's record (outcomes.ts). KEYS[FIXED+1] the shard's stream
 * of finished jobs; ARGV[1] job id, ARGV[2] what to keep, ARGV[3] the most bytes one job's entry may
 * take, ARGV[4] the most all of the run's entries on this shard may take, ARGV[5] the outcome. An
 * entry past either bound is refused (RESULT_TOO_LARGE / RESULTS_FULL with the sizes), and nothing
 * is stored. A job that ends again (put back to work by hand) replaces its earlier entry. The job is
 * also appended to the stream (`results.stream()` reads it), which lives the run's retention after
 * its last entry. Returns the shard's result bytes.
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
local FINISHED = KEYS[FIXED + 1]
redis.call('XADD', FINISHED, '*', 'job', ARGV[1], 'outcome', ARGV[5])
local retention = tonumber(redis.call('HGET', SMETA, 'runRetentionMs') or '0')
if retention > 0 then redis.call('PEXPIRE', FINISHED, retention) end
keep_ttl()
return total
`;
