import { shardPrelude } from './prelude.js';

/**
 * Fences a dead (lost or superseded) instance on this shard: its later puts are refused and write
 * nothing. A put is stored and counted in one step, so nothing of it is half-way to settle. Its put
 * bitmap stays (it expires with the run): a send of a put stored before the fence, whose reply was
 * lost, must still learn that it was stored.
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const settleInstanceLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return 0 end
redis.call('SADD', FENCED, ARGV[1])
keep_ttl()
return 1
`;
