/**
 * Marks the run seen if it is still current (RUN_ID=auto, shared/run/current-run.ts).
 * KEYS[1]: the queue's current run pointer; ARGV[1]: a run id.
 */
export const markRunSeenLua = /* lua */ `
local pointer = KEYS[1]
if redis.call('HGET', pointer, 'run') == ARGV[1] then redis.call('HSET', pointer, 'seen', '1') end
return 0
`;
