import { shardPrelude } from './prelude.js';

/**
 * Starts the run's record on one shard (every create calls it, on every shard; with one shard the
 * shard's meta is the run's). ARGV[1] the run's id prefix, ARGV[2] keepCompleted, ARGV[3]
 * keepFailed (-1: keep all), ARGV[4] the run's retention ms. A record left by an earlier creation of
 * the same run id (its keys not all expired yet) is wiped first: a run id used again starts clean.
 * Returns 1 when it started the record, 0 when it was there.
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const initShardLua =
  shardPrelude +
  /* lua */ `
local function creation(p) return tonumber(string.match(p, '%+(%d+)$')) end
if PREFIX == ARGV[1] then return 0 end
-- a create that read an earlier creation, arriving after a newer one started here: not its record
if PREFIX and creation(PREFIX) > creation(ARGV[1]) then return 0 end
-- an earlier creation's leftovers go (one shard: its meta is the run's, already new, so it stays)
for i = 2, RUN_OWNED do redis.call('DEL', KEYS[i]) end
if redis.call('HEXISTS', SMETA, 'runId') == 0 then redis.call('DEL', SMETA) end
redis.call('HSET', SMETA, 'shardPrefix', ARGV[1], 'keepCompleted', ARGV[2], 'keepFailed', ARGV[3],
  'runRetentionMs', ARGV[4])
return 1
`;
