import { shardPrelude } from './prelude.js';

/**
 * The callback job's mark on the shard that holds it (its own slot): ARGV[1] callback name, ARGV[2]
 * 'check' to read it, or 'added' (its deliverer saw the add succeed) / 'started' (a consumer took it,
 * before its handler runs) to set it. A job can only leave the queue (trimmed, removed) after it
 * started, so a deliverer that finds no mark knows an add cannot duplicate one. Returns the mark or
 * false.
 *
 * KEYS: the shard's fixed keys, in SHARD_SCRIPT_KEYS order (script-keys.ts), then from
 * KEYS[FIXED + 1] the per-call keys named above. ARGV: as above, from ARGV[1].
 */
export const callbackMarkLua =
  shardPrelude +
  /* lua */ `
if not PREFIX then return false end
local field = 'cbMark:' .. ARGV[1]
if ARGV[2] ~= 'check' then
  redis.call('HSET', SMETA, field, ARGV[2])
  keep_ttl()
end
return redis.call('HGET', SMETA, field) or false
`;
