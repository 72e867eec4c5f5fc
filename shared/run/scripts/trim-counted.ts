import { shardPrelude } from './prelude.js';

/**
 * Trims BullMQ's finished set of this shard to the run's keep, from the list of counted jobs.
 * KEYS[FIXED+1] the counted list, KEYS[FIXED+2] BullMQ's completed or failed set, then per id its
 * hash and its logs; ARGV[1..] ids read from the list's old end. A job is removed only when it is
 * still finished there and counted (a job put back to work stays); each id leaves the list.
 * Returns how many jobs it removed.
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const trimCountedLua =
  shardPrelude +
  /* lua */ `
local LIST, FINISHED = KEYS[FIXED + 1], KEYS[FIXED + 2]
local removed = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  local jk, logs = KEYS[FIXED + 1 + 2 * i], KEYS[FIXED + 2 + 2 * i]
  if redis.call('LREM', LIST, -1, id) == 1 and redis.call('ZSCORE', FINISHED, id)
    and redis.call('HEXISTS', jk, 'cvAcct') == 1 then
    redis.call('ZREM', FINISHED, id)
    redis.call('DEL', jk, logs)
    removed = removed + 1
  end
end
return removed
`;
