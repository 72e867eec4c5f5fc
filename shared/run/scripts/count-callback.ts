import { shardPrelude } from './prelude.js';

/**
 * A join callback's job finished (its state is recorded in its run): it joins the list conveyor
 * trims from, like a counted job. KEYS[FIXED+1] its hash; ARGV[1] job id, ARGV[2] outcome. Returns
 * '1' when a counted list is past its keep.
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const countCallbackLua =
  shardPrelude +
  /* lua */ `
local id, jk = ARGV[1], KEYS[FIXED + 1]
if not PREFIX or not owned(id) or redis.call('HEXISTS', jk, 'finishedOn') == 0 then return '0' end
if redis.call('HGET', jk, 'cvAcct') == ARGV[2] then return '0' end
redis.call('HSET', jk, 'cvAcct', ARGV[2])
keep_ttl()
return mark_counted(id, ARGV[2]) and '1' or '0'
`;
