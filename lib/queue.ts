import { commonShape, parseEnv, toCommonConfig } from '../shared/config.js';
import { runKeys } from '../shared/keys.js';
import { closeRedis, createRedis, type RedisClient } from '../shared/redis.js';
import { listRuns, readRunStatus, type RunStatus } from '../shared/run/status.js';
import { loggerFor, parseOptions, type ConnectionOptions } from './options.js';
import { assertRunId, openRun, type RunHandle } from './run.js';

/** How many runs `runs()` reads when not told: as many as `conveyor status --list` shows. */
export const DEFAULT_RUN_LIMIT = 20;

export type QueueHandle = {
  readonly name: string;
  /**
   * The queue's latest runs, newest first, each as `conveyor status --json` prints it (what
   * `conveyor status --list` shows); a listed run whose state is gone from Redis is left out.
   */
  runs(opts?: { limit?: number }): Promise<RunStatus[]>;
  /** The id of the queue's newest run, or null when it has none. */
  latestRunId(): Promise<string | null>;
  /**
   * A handle on one of the queue's runs with the shard count the run was created with (whatever
   * `shards` says here), on this handle's connection; null when no producer has created it.
   */
  run(runId: string): Promise<RunHandle | null>;
  /** Closes the connection this handle opened (not a `redis` you passed in). */
  close(): Promise<void>;
};

/** A handle on a queue: its runs, for status and cancel, from any process. */
export function openQueue(opts: ConnectionOptions & { redis?: RedisClient } = {}): QueueHandle {
  const config = parseOptions((env) => toCommonConfig(parseEnv(commonShape, env)), opts, {});
  const log = loggerFor(opts, 'queue');
  const redis = opts.redis ?? createRedis(config, log, `conveyor:queue:${config.queue}`);
  const { queue, leaseMs } = config;
  return {
    name: queue,
    runs: async ({ limit = DEFAULT_RUN_LIMIT } = {}) => {
      const ids = await listRuns(redis, queue, limit);
      const runs = await Promise.all(ids.map((id) => readRunStatus(redis, queue, id, leaseMs)));
      return runs.filter((s) => s !== null);
    },
    latestRunId: async () => (await listRuns(redis, queue, 1))[0] ?? null,
    run: async (runId) => {
      assertRunId(runId);
      const shards = await redis.hget(runKeys(queue, runId).meta, 'shards');
      if (shards === null) return null;
      return openRun({ ...opts, queue, shards: Number(shards) || 1, runId, redis, log });
    },
    close: async () => {
      if (!opts.redis) await closeRedis(redis);
    },
  };
}
