import { runPrelude } from './prelude.js';

/**
 * ARGV[2] runId, ARGV[3] expected producers, ARGV[4] lease ms, ARGV[5] shard count, ARGV[6]
 * retention ms after the join (0 = keep), ARGV[7] the run's join callbacks (JSON list, '' for none;
 * see callbacks.ts), ARGV[8] the run whose callback started this one ('' for none; the key after the
 * run's keys is its meta, which records this run as its next), ARGV[9] the bounds of its collected results (JSON {maxJobBytes, maxRunBytes}; '' when it collects none).
 * A new run gets the next creation number of its queue: its id prefix is '<runId>+<n>'.
 * Returns {1 when created or 0 when it already existed, the run's id prefix}.
 *
 * KEYS: the run's keys, in RUN_SCRIPT_KEYS order (script-keys.ts), then any named above.
 * ARGV[1]: the run's events channel; the script's own arguments from ARGV[2], as above.
 */
export const createRunLua =
  runPrelude +
  /* lua */ `
local expected = redis.call('HGET', META, 'expectedProducers')
if expected then
  if tonumber(expected) ~= tonumber(ARGV[3]) then
    return redis.error_reply('EXPECTED_MISMATCH ' .. expected)
  end
  local shards = redis.call('HGET', META, 'shards') or '1'
  if tonumber(shards) ~= tonumber(ARGV[5]) then return redis.error_reply('SHARDS_MISMATCH ' .. shards) end
  return {0, redis.call('HGET', META, 'idPrefix')}
end
if tonumber(ARGV[3]) < 1 then return redis.error_reply('EXPECTED_INVALID ' .. ARGV[3]) end
local now = now_ms()
prune_index(now)
-- A run id used again (its retention passed) starts clean: leftovers of the earlier creation go, and
-- the new one's creation number makes all its job ids new. Consumers already waiting for this run
-- keep their records (CONSUMERS, BEATS).
for i = 2, RUN_KEY_COUNT do
  local key = KEYS[i]
  if not QUEUE_WIDE[i] and key ~= CONSUMERS and key ~= BEATS then redis.call('DEL', key) end
end
redis.call('ZREM', RUN_INDEX, ARGV[2])
redis.call('ZREM', PENDING, ARGV[2])
redis.call('ZREM', EXPIRIES, ARGV[2])
redis.call('ZREM', CALLBACKS_DUE, ARGV[2])
local prefix = ARGV[2] .. '+' .. redis.call('INCR', CREATIONS)
redis.call('HSET', META, 'runId', ARGV[2], 'expectedProducers', ARGV[3], 'createdAt', now,
  'state', 'pending', 'leaseMs', ARGV[4], 'lastSeenAt', now, 'shards', ARGV[5], 'retentionMs', ARGV[6],
  'idPrefix', prefix)
if ARGV[7] and ARGV[7] ~= '' then redis.call('HSET', META, 'callbacks', ARGV[7]) end
if ARGV[8] and ARGV[8] ~= '' then
  redis.call('HSET', META, 'afterRun', ARGV[8])
  -- KEYS[RUN_KEY_COUNT + 1]: the predecessor's meta when it is on the same queue; it names this run as its next
  local PREV = KEYS[RUN_KEY_COUNT + 1]
  if PREV and redis.call('EXISTS', PREV) == 1 then redis.call('HSET', PREV, 'nextRun', ARGV[2]) end
end
if ARGV[9] and ARGV[9] ~= '' then redis.call('HSET', META, 'collectResults', ARGV[9]) end
redis.call('ZADD', RUN_INDEX, 'NX', now, ARGV[2])
redis.call('ZADD', PENDING, 'NX', now, ARGV[2])
return {1, prefix}
`;
