import { shardPrelude } from './prelude.js';

/**
 * ARGV[1..] job ids about to be removed because their run was cancelled.
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const markCancelledLua =
  shardPrelude +
  /* lua */ `
if not PREFIX or redis.call('HEXISTS', SMETA, 'closedAt') == 1 then return 0 end
local n = 0
for i = 1, #ARGV do
  if owned(ARGV[i]) then
    redis.call('SADD', CANCELLED, ARGV[i])
    n = n + 1
  end
end
return n
`;
