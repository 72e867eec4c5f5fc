import { queuePrefix, runKeys } from '../keys.js';
import type { RedisClient } from '../redis.js';
import { luaScript } from './lua-script.js';
import { markRunSeenLua } from './scripts/mark-run-seen.js';
import { resolveCurrentRunLua } from './scripts/resolve-current-run.js';

/**
 * The RUN_ID value meaning "the queue's open run, or a new one after the last joined": what every
 * producer and consumer of one `docker compose up` uses by default, so the next `up` starts the next
 * run by itself. Reserved: no run is ever named `auto`.
 */
export const AUTO_RUN_ID = 'auto';

/** Ids of runs `auto` creates: `run-1`, `run-2`, ... per queue. */
export const AUTO_RUN_PREFIX = 'run-';

const RESOLVE = luaScript(resolveCurrentRunLua);

const MARK_SEEN = luaScript(markRunSeenLua);

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
