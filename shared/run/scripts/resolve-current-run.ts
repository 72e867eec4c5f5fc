/**
 * One atomic step, so that processes starting at the same time agree. KEYS[1]: the queue's current
 * run (hash: `run`, and `seen` once the run was found to exist); KEYS[2]: the queue's sequence;
 * KEYS[3]: the meta key of the run the caller read from KEYS[1] (ARGV[1]; '' for none, KEYS[3] is
 * then unused). If KEYS[1] changed since, returns {'', 'retry'}. The current run is the answer
 * while it has not joined: its meta says pending, or it does not exist yet (a consumer may start
 * before any producer created it). Once it joined or was abandoned, or its keys expired after that
 * (it was seen and is gone), the sequence is incremented and `run-<n>` (ARGV[2] = prefix) becomes the
 * current run.
 * Returns {runId, 'open' | 'new'}.
 */
export const resolveCurrentRunLua = /* lua */ `
local pointer, sequence, meta = KEYS[1], KEYS[2], KEYS[3]
local current = redis.call('HGET', pointer, 'run') or ''
if current ~= ARGV[1] then return {'', 'retry'} end
if current ~= '' then
  local state = redis.call('HGET', meta, 'state')
  if state and state ~= 'joined' and state ~= 'abandoned' then
    redis.call('HSET', pointer, 'seen', '1')
    return {current, 'open'}
  end
  if not state and redis.call('HGET', pointer, 'seen') ~= '1' then return {current, 'open'} end
end
local n = redis.call('INCR', sequence)
local id = ARGV[2] .. n
redis.call('HSET', pointer, 'run', id, 'seen', '0')
return {id, 'new'}
`;
