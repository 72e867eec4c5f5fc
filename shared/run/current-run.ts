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
 * One atomic step, so that processes starting at the same time agree: if the queue's current run
 * (KEYS[1]) exists and has not joined, it is the answer; otherwise the queue's sequence (KEYS[2]) is
 * incremented and `run-<n>` becomes the current run. ARGV[1], ARGV[2]: the text before and after the
 * run id in a run's meta key (same hash tag as KEYS, so one Cluster slot); ARGV[3]: the id prefix.
 * Returns {runId, 'open' | 'new'}.
 */
const RESOLVE = luaScript(`
local current = redis.call('GET', KEYS[1])
if current then
  local state = redis.call('HGET', ARGV[1] .. current .. ARGV[2], 'state')
  if state ~= 'joined' then return {current, 'open'} end
end
local n = redis.call('INCR', KEYS[2])
local id = ARGV[3] .. n
redis.call('SET', KEYS[1], id)
return {id, 'new'}
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
  const marker = '\u0000';
  const [before, after] = runKeys(queue, marker).meta.split(marker) as [string, string];
  const { current, sequence } = currentRunKeys(queue);
  const reply = (await RESOLVE(redis, [current, sequence], [before, after, AUTO_RUN_PREFIX])) as [
    string,
    'open' | 'new',
  ];
  return { runId: reply[0], source: reply[1] };
}
