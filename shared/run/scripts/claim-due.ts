import { common } from './prelude.js';

/**
 * Takes the most overdue runs of one of the queue's schedules, the pending runs or the callbacks
 * outbox (sorted sets scored by when each run is next due for a look, Redis clock), and pushes each
 * back by ARGV[2] ms, so the next caller takes the next most overdue ones. However many runs wait and
 * whatever they wait for, each is taken in turn: how soon depends on how many runs the checkers take
 * between them, never on a run's place in a list. KEYS[1] the schedule; ARGV[1] how many at most.
 * Returns the run ids taken.
 *
 * KEYS and ARGV: as above (none of the run's fixed keys).
 */
export const claimDueLua =
  common +
  /* lua */ `
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), id) end
return ids
`;
