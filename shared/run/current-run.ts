import { queuePrefix, runKeys } from '../keys.js';
import type { RedisClient } from '../redis.js';
import { luaScript } from './lua-script.js';

/**
 * The RUN_ID value meaning "the queue's open run, or a new one after the last joined": what every
 * producer and consumer of one `docker compose up` uses by default, so the next `up` starts the next
 * run by itself. Reserved: no run is ever named `auto`.
 */
export const AUTO_RUN_ID = 'auto';

/** Ids of runs `auto` creates: `run-1`, `run-2`, ... per queue. */
export const AUTO_RUN_PREFIX = 'run-';

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
const RESOLVE = luaScript(`
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
`);

/** KEYS[1]: the current run pointer; ARGV[1]: a run id. Marks the run seen if it is still current. */
const MARK_SEEN = luaScript(`
local pointer = KEYS[1]
if redis.call('HGET', pointer, 'run') == ARGV[1] then redis.call('HSET', pointer, 'seen', '1') end
return 0
`);

export function currentRunKeys(queue: string): { current: string; sequence: string } {
  const base = `${queuePrefix(queue)}:${queue}:conveyor`;
  return { current: `${base}:current-run`, sequence: `${base}:run-seq` };
}

export type ResolvedRun = { runId: string; source: 'explicit' | 'open' | 'new' };

/**
 * The run a process joins: `runId` itself unless it is `auto`, in which case the queue's open run,
 * or a new one when the last has joined (or there is none).
 */
export async function resolveRunId(redis: RedisClient, queue: string, runId: string): Promise<ResolvedRun> {
  if (runId !== AUTO_RUN_ID) return { runId, source: 'explicit' };
  const { current, sequence } = currentRunKeys(queue);
  for (;;) {
    const seen = (await redis.hget(current, 'run')) ?? '';
    const meta = seen ? runKeys(queue, seen).meta : sequence;
    const [id, source] = (await RESOLVE(redis, [current, sequence, meta], [seen, AUTO_RUN_PREFIX])) as [
      string,
      'open' | 'new' | 'retry',
    ];
    // Another process moved the current run between the read and the script: read it again.
    if (source !== 'retry') return { runId: id, source };
  }
}

/**
 * Records that an `auto` run existed (call once a process is done with it): after its keys expire
 * (the run's retention), `auto` then knows it is gone and starts the next run instead of reusing it.
 */
export async function markRunSeen(redis: RedisClient, queue: string, resolved: ResolvedRun): Promise<void> {
  if (resolved.source === 'explicit') return;
  await MARK_SEEN(redis, [currentRunKeys(queue).current], [resolved.runId]);
}
