import type { Queue } from 'bullmq';
import type { Request } from 'express';
import { nameSchema } from '../../shared/config.js';
import type { Logger } from '../../shared/logger.js';
import type { JobData } from '../../shared/queue.js';
import type { RedisClient } from '../../shared/redis.js';
import type { DashboardConfig } from '../config.js';
import type { LiveRuns } from '../live-runs.js';

/** What every route module is built from (one per dashboard, made by createApp). */
export type RouteContext = {
  config: Pick<
    DashboardConfig,
    | 'queue'
    | 'readOnly'
    | 'access'
    | 'allowedHosts'
    | 'trustProxy'
    | 'sessionMs'
    | 'maxWatchedRuns'
    | 'leaseMs'
    | 'pollMs'
    | 'historyMs'
    | 'runId'
  >;
  redis: RedisClient;
  /** One BullMQ queue per shard of `config.queue`, in shard order. */
  queues: readonly Queue<JobData>[];
  log: Logger;
  live: LiveRuns;
};

/** Request bodies the dashboard accepts (sign-in form, actions). */
export const BODY_LIMIT = '4kb';

/** Run id from `?run=`: undefined when absent, null when malformed. */
export function runParam(req: Request): string | undefined | null {
  const v = req.query.run;
  if (v === undefined || v === '') return undefined;
  return typeof v === 'string' && nameSchema.safeParse(v).success ? v : null;
}
