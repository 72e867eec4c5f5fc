import { QueueEvents } from 'bullmq';
import { Registry } from 'prom-client';
import { queuePrefix } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import { registerDefaultMetrics } from '../shared/metrics/process-metrics.js';
import { registerRunMetrics } from '../shared/metrics/run-metrics.js';
import { openQueues } from '../shared/queue.js';
import { closeRedis, createRedis, type RedisClient } from '../shared/redis.js';
import { runSteps, type ShutdownStep } from '../shared/shutdown.js';
import { createApp, type Dashboard } from './app.js';
import type { DashboardConfig } from './config.js';

export type OpenedDashboard = {
  dashboard: Dashboard;
  /** Its connection, created, not yet known to answer (the command waits for it; `/readyz` says so). */
  redis: RedisClient;
  /**
   * Its cleanup after the HTTP server has closed, in order: the pollers and event streams, the queue
   * events, the run metrics, the queues, the connections. For `runSteps`/`makeCloser`.
   */
  closeSteps: () => ShutdownStep[];
  /** Runs `closeSteps`, each bounded by `stepTimeoutMs` (for a dashboard not listening itself). */
  close: () => Promise<void>;
};

export type OpenDashboardDeps = {
  log: Logger;
  /** Sample the queue's depth from the start (the command's chart has history before anyone looks). */
  watchDefault?: boolean;
};

/** How long each cleanup step may take: half the shutdown grace, at least a second. */
export const stepTimeoutOf = (config: DashboardConfig) =>
  Math.max(1_000, Math.floor(config.shutdownGraceMs / 2));

/**
 * What `conveyor dashboard` and the library's `createDashboard`/`startDashboard` share once their
 * settings are parsed: the connection, one BullMQ queue per shard, the queue's events (unsharded
 * only), the process and run metrics served at `/metrics`, and the app. Nothing listens yet.
 */
export function openDashboard(config: DashboardConfig, deps: OpenDashboardDeps): OpenedDashboard {
  const { log } = deps;
  const redis = createRedis(config, log, 'conveyor:dashboard');
  const queues = openQueues(config.queue, config.shards, redis);
  // BullMQ's "drained" is per BullMQ queue: with shards, one draining says nothing about the queue, so
  // the live page infers drained from the summed counts instead of listening to k event streams.
  // QueueEvents blocks on its stream, so it gets a connection of its own.
  const eventsRedis = config.shards === 1 ? createRedis(config, log, 'conveyor:dashboard-events') : undefined;
  const queueEvents = eventsRedis
    ? new QueueEvents(config.queue, { connection: eventsRedis, prefix: queuePrefix(config.queue) })
    : undefined;
  queueEvents?.on('error', (err) => log.debug({ err: err.message }, 'queue events error'));
  const metrics = new Registry();
  registerDefaultMetrics(metrics, 'dashboard');
  const runMetrics = registerRunMetrics(metrics, {
    redis,
    queues: [{ name: config.queue, shards: config.shards }],
    leaseMs: config.leaseMs,
    log,
  });
  const dashboard = createApp({
    config,
    redis,
    queues,
    queueEvents,
    log,
    metrics,
    watchDefault: deps.watchDefault,
  });
  const closeSteps = (): ShutdownStep[] => [
    { name: 'dashboard', run: () => dashboard.close() },
    { name: 'queue-events', run: () => queueEvents?.close() },
    { name: 'metrics', run: () => runMetrics.close() },
    { name: 'queues', run: () => Promise.all(queues.map((q) => q.close())) },
    {
      name: 'redis',
      run: () => Promise.all([eventsRedis ? closeRedis(eventsRedis) : undefined, closeRedis(redis)]),
    },
  ];
  let closing: Promise<void> | undefined;
  return {
    dashboard,
    redis,
    closeSteps,
    close: () => (closing ??= runSteps(closeSteps(), log, stepTimeoutOf(config))),
  };
}
