import type { QueueEvents, Queue } from 'bullmq';
import express, { type ErrorRequestHandler, type Express, type RequestHandler, type Router } from 'express';
import type { Registry } from 'prom-client';
import type { Logger } from '../shared/logger.js';
import type { JobData } from '../shared/queue.js';
import type { RedisClient } from '../shared/redis.js';
import { requireAccess, sameOriginWrites } from './access.js';
import { securityHeaders } from './headers.js';
import { allowedHostsOnly } from './hosts.js';
import { LiveRuns } from './live-runs.js';
import { LoginThrottle } from './login-throttle.js';
import { actionRoutes } from './routes/actions.js';
import { apiRoutes } from './routes/api.js';
import { boardRoutes } from './routes/board.js';
import type { RouteContext } from './routes/context.js';
import { pageRoutes } from './routes/page.js';
import { probeRoutes } from './routes/probes.js';
import { signInRoutes } from './routes/sign-in.js';
import { Sessions } from './session.js';
import { registerStreamMetrics } from './stream-metrics.js';

export { publicDir } from './routes/page.js';

export type DashboardDeps = {
  config: RouteContext['config'];
  redis: RedisClient;
  /** One BullMQ queue per shard of `config.queue`, in shard order (`openQueues`). */
  queues: readonly Queue<JobData>[];
  /**
   * BullMQ events for the queue (drained moments); optional, counts are watched without it. Only
   * for an unsharded queue: each shard has its own event stream, and one shard draining is not the
   * queue draining.
   */
  queueEvents?: QueueEvents;
  log: Logger;
  /** Served at `/metrics` when given (see shared/metrics/run-metrics.ts). */
  metrics?: Registry;
  /** Overrides for tests: SSE keep-alive interval. */
  heartbeatMs?: number;
  /** Overrides for tests: how long an event stream client may stop reading before it is dropped. */
  stallMs?: number;
  /** Sample the queue's depth from the start, so the chart has history before anyone opens the page. */
  watchDefault?: boolean;
};

export type Dashboard = {
  app: Express;
  live: LiveRuns;
  /** Stops the pollers and ends every event stream; the HTTP server can then close. */
  close(): void;
};

const OPEN_PATHS = ['/healthz', '/readyz', '/login', '/logout'];

/**
 * The dashboard as an Express app (no `listen`): conveyor's live page at `/`, its JSON and event
 * stream under `/api`, cancel actions, and Bull Board at `/queues`. Each part is a route module
 * (dashboard/routes/); this is their order, which is the access policy: a request for a host the
 * dashboard does not serve reaches nothing, the probes are open, everything after the gate needs
 * credentials.
 */
export function createApp(deps: DashboardDeps): Dashboard {
  const { config, redis, queues, log } = deps;
  if (queues.length === 0) throw new Error('createApp needs the BullMQ queue of each shard (openQueues).');
  if (queues.length > 1 && deps.queueEvents)
    throw new Error('queueEvents covers one BullMQ queue: leave it out for a sharded queue.');
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // Whose X-Forwarded-For/-Proto to believe: the client's address (sign-in throttle), https (Secure cookie).
  app.set('trust proxy', config.trustProxy);
  const live = new LiveRuns({
    redis,
    queue: config.queue,
    queues,
    queueEvents: deps.queueEvents,
    log,
    leaseMs: config.leaseMs,
    pollMs: config.pollMs,
    historyMs: config.historyMs,
    defaultRunId: config.runId,
    heartbeatMs: deps.heartbeatMs,
    stallMs: deps.stallMs,
    maxWatchedRuns: config.maxWatchedRuns,
    watchDefault: deps.watchDefault,
  });
  if (deps.metrics) registerStreamMetrics(deps.metrics, live);
  const ctx: RouteContext = { config, redis, queues, log, live };
  const sessions =
    config.access.kind === 'token' ? new Sessions(config.access.token, config.sessionMs) : undefined;
  const gate = { throttle: new LoginThrottle(), log, sessions };

  const routes: [path: string, handler: RequestHandler | Router][] = [
    ['/', allowedHostsOnly(config.allowedHosts, log)],
    ['/', securityHeaders()],
    ['/', probeRoutes(redis, deps.metrics)],
    ['/', requireAccess(config.access, OPEN_PATHS, gate)],
    ['/', sameOriginWrites()],
    ...(config.access.kind === 'token' && sessions
      ? [['/', signInRoutes(config.access, sessions, gate, config.sessionMs)] as [string, Router]]
      : []),
    ['/queues', boardRoutes(ctx)],
    ['/', pageRoutes()],
    ['/api/actions', actionRoutes(ctx)],
    ['/api', apiRoutes(ctx)],
  ];
  for (const [path, handler] of routes) app.use(path, handler);

  app.use('/api', (_req, res) => {
    res.status(404).json({ error: 'no such endpoint' });
  });
  // Ours rather than Express's, which would replace the headers above with its own.
  app.use((_req, res) => {
    res.status(404).json({ error: 'not found' });
  });
  const onError: ErrorRequestHandler = (err: unknown, _req, res, _next) => {
    const e = err as { status?: number; type?: string; message?: string };
    const status = typeof e.status === 'number' && e.status >= 400 && e.status < 500 ? e.status : 500;
    // Never log request bodies or headers: they may carry credentials.
    if (status === 500) log.error({ err: e.message }, 'dashboard request failed');
    if (res.headersSent) return;
    res.status(status).json({
      error:
        status === 413
          ? 'request body too large'
          : status === 500
            ? 'internal error'
            : (e.message ?? 'bad request'),
    });
  };
  app.use(onError);

  return { app, live, close: () => live.close() };
}
