import { resolve } from 'node:path';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue, QueueEvents } from 'bullmq';
import express, { type ErrorRequestHandler, type Express, type Request, type Response } from 'express';
import type { RedisClient } from '../shared/redis.js';
import type { Registry } from 'prom-client';
import { nameSchema } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { metricsHandler } from '../shared/metrics/metrics-server.js';
import type { JobData } from '../shared/queue.js';
import { projectRoot } from '../shared/roles.js';
import { RunStore } from '../shared/run/run-store.js';
import { listRuns, readRunStatus } from '../shared/run/status.js';
import {
  checkCredentials,
  cookie,
  recordAttempt,
  requireAccess,
  requireActionHeader,
  sameOriginWrites,
  sendLoginPage,
  throttled,
  TOKEN_COOKIE,
} from './access.js';
import { BOARD_CSP, securityHeaders } from './headers.js';
import { boardMessages } from './board-messages.js';
import { Sessions } from './session.js';
import { LoginThrottle } from './login-throttle.js';
import type { DashboardConfig } from './config.js';
import { allowedHostsOnly } from './hosts.js';
import { LiveRuns } from './live-runs.js';
import { registerStreamMetrics } from './stream-metrics.js';
import { readQueueDepth } from './queue-depth.js';
import { MAX_PAGE_ROWS, TABLES, tablePage, type Table } from './run-view.js';

export type DashboardDeps = {
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

/** Bull Board's page asks Google for its fonts; offline installs saw a failed request, so the link goes. */
const REMOTE_FONTS = /<link[^>]*\/\/fonts\.(googleapis|gstatic)\.com[^>]*>\s*/g;

/** Bull Board renders its page with `res.render`: drop the remote font links from what it renders. */
const withoutRemoteFonts: express.RequestHandler = (_req, res, next) => {
  const render = res.render.bind(res);
  res.render = (view: string, options?: object) =>
    render(view, options ?? {}, (err: Error | null, html?: string) => {
      if (err) next(err);
      else res.send((html ?? '').replace(REMOTE_FONTS, ''));
    });
  next();
};

export const publicDir = resolve(projectRoot, 'dashboard', 'public');
const BODY_LIMIT = '4kb';
const OPEN_PATHS = ['/healthz', '/readyz', '/login', '/logout'];
const ASSETS = new Set(['/app.js', '/style.css', '/favicon.svg']);

/** Run id from `?run=`: undefined when absent, null when malformed. */
function runParam(req: Request): string | undefined | null {
  const v = req.query.run;
  if (v === undefined || v === '') return undefined;
  return typeof v === 'string' && nameSchema.safeParse(v).success ? v : null;
}

/**
 * The dashboard as an Express app (no `listen`): conveyor's live page at `/`, its JSON and event
 * stream under `/api`, cancel actions, and Bull Board at `/queues`.
 */
export function createApp(deps: DashboardDeps): Dashboard {
  const { config, redis, queues, log } = deps;
  const queue = config.queue;
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
    queue,
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

  // First of all: a request addressed to a name the dashboard does not serve reaches nothing.
  app.use(allowedHostsOnly(config.allowedHosts, log));
  app.use(securityHeaders());

  // Open like /healthz, so Prometheus scrapes without the dashboard's credentials.
  if (deps.metrics) {
    registerStreamMetrics(deps.metrics, live);
    app.get('/metrics', metricsHandler(deps.metrics));
  }
  app.get('/healthz', (_req, res) => {
    res.json({ ok: true });
  });
  app.get('/readyz', async (_req, res) => {
    // Commands queue while Redis is away (maxRetriesPerRequest: null), so bound the ping.
    const ok =
      redis.status === 'ready' &&
      (await Promise.race([
        redis.ping().then(
          () => true,
          () => false,
        ),
        new Promise<boolean>((r) => setTimeout(r, 1_000, false).unref()),
      ]));
    res.status(ok ? 200 : 503).json({ ok, redis: ok ? 'reachable' : 'unreachable' });
  });

  const sessions =
    config.access.kind === 'token' ? new Sessions(config.access.token, config.sessionMs) : undefined;
  const gate = { throttle: new LoginThrottle(), log, sessions };
  app.use(requireAccess(config.access, OPEN_PATHS, gate));
  app.use(sameOriginWrites());

  if (config.access.kind === 'token' && sessions) {
    const access = config.access;
    app.post(
      '/login',
      express.urlencoded({ extended: false, limit: BODY_LIMIT }),
      (req: Request, res: Response) => {
        if (throttled(req, res, gate)) return;
        const token = (req.body as Record<string, unknown> | undefined)?.token;
        const fake = {
          headers: { authorization: `Bearer ${typeof token === 'string' ? token : ''}` },
        } as Request;
        const verdict = checkCredentials(fake, access);
        recordAttempt(req, verdict, gate);
        if (verdict !== 'ok') {
          sendLoginPage(res, 401, true);
          return;
        }
        res.cookie(TOKEN_COOKIE, sessions.issue(), {
          httpOnly: true,
          sameSite: 'strict',
          secure: req.secure,
          path: '/',
          maxAge: config.sessionMs,
        });
        res.redirect(303, '/');
      },
    );
    // Open (like /login): a browser whose session is already over can still clear its cookie.
    app.post('/logout', (req: Request, res: Response) => {
      const session = cookie(req, TOKEN_COOKIE);
      if (session) sessions.revoke(session);
      res.clearCookie(TOKEN_COOKIE, { httpOnly: true, sameSite: 'strict', secure: req.secure, path: '/' });
      res.redirect(303, '/');
    });
  }

  const board = new ExpressAdapter();
  board.setBasePath('/queues');
  createBullBoard({
    // Bull Board keys each adapter by its BullMQ queue name, which differs per shard (`q#0`, `q#1`...).
    queues: queues.map(
      (q, i) =>
        new BullMQAdapter(q, {
          readOnlyMode: config.readOnly,
          allowRetries: !config.readOnly,
          description: queues.length > 1 ? `shard ${i} of ${queues.length} of conveyor queue "${queue}"` : '',
        }),
    ),
    serverAdapter: board,
    options: { uiConfig: { boardTitle: 'conveyor', showMetrics: true, hideDocsLink: true } },
  });
  const boardApp = board.getRouter() as express.Express;
  // Bull Board's router is an Express app of its own, which announces itself unless told not to.
  boardApp.disable('x-powered-by');
  app.use(
    '/queues',
    (_req, res, next) => {
      res.set('Content-Security-Policy', BOARD_CSP);
      next();
    },
    withoutRemoteFonts,
    boardMessages(),
    boardApp,
  );

  // The page itself carries the strict CSP and no-store (securityHeaders).
  const page = (_req: Request, res: Response) => {
    res.sendFile(resolve(publicDir, 'index.html'));
  };
  app.get('/', page);
  // Only the page's own files: index.html is served at / alone, with its CSP.
  app.use('/assets', (req, res, next) => {
    if (ASSETS.has(req.path)) next();
    else res.status(404).json({ error: 'no such asset' });
  });
  app.use(
    '/assets',
    express.static(publicDir, {
      index: false,
      fallthrough: false,
      cacheControl: false,
      // Revalidated each time (a new version shows at once), and never kept by a shared cache.
      setHeaders: (res) => res.setHeader('Cache-Control', 'private, no-cache'),
    }),
  );

  app.get('/api/info', (_req, res) => {
    res.json({
      queue,
      shards: queues.map((q, index) => ({ index, name: q.name })),
      readOnly: config.readOnly,
      actions: !config.readOnly,
      access: config.access.kind,
      historyMs: config.historyMs,
      // The run shown when the page names none (RUN_ID), else null: the latest.
      defaultRun: config.runId ?? null,
    });
  });
  app.get('/api/runs', async (_req, res) => {
    res.json(await listRuns(redis, queue));
  });
  app.get('/api/queue', async (_req, res) => {
    res.json({ queue, ...(await readQueueDepth(queues)) });
  });
  app.get('/api/status', async (req, res) => {
    const asked = runParam(req);
    if (asked === null) {
      res.status(400).json({ error: '?run= must be a run id (letters, digits, "_", "." or "-")' });
      return;
    }
    const runId = asked ?? config.runId ?? (await listRuns(redis, queue, 1))[0];
    const status = runId === undefined ? null : await readRunStatus(redis, queue, runId, config.leaseMs);
    if (!status) {
      res.status(404).json({ error: `no run ${runId ? `"${runId}" ` : ''}on queue "${queue}"` });
      return;
    }
    res.json(status);
  });
  // A page of a run's producers or consumers (the stream carries the first): from the watched run's
  // last reading when a page watches it, so paging through a big run costs Redis nothing.
  app.get('/api/rows', async (req, res) => {
    const runId = runParam(req);
    const table = req.query.table;
    const offset = Number(req.query.offset ?? 0);
    const limit = Number(req.query.limit ?? 50);
    if (!runId) {
      res.status(400).json({ error: '?run= must be a run id' });
      return;
    }
    if (typeof table !== 'string' || !TABLES.includes(table as Table)) {
      res.status(400).json({ error: `?table= must be one of ${TABLES.join(', ')}` });
      return;
    }
    if (
      !Number.isInteger(offset) ||
      offset < 0 ||
      !Number.isInteger(limit) ||
      limit < 1 ||
      limit > MAX_PAGE_ROWS
    ) {
      res
        .status(400)
        .json({ error: `?offset= must be a whole number from 0, ?limit= one from 1 to ${MAX_PAGE_ROWS}` });
      return;
    }
    const status = live.watchedStatus(runId) ?? (await readRunStatus(redis, queue, runId, config.leaseMs));
    if (!status) {
      res.status(404).json({ error: `no run "${runId}" on queue "${queue}"` });
      return;
    }
    res.json(tablePage(status, table as Table, offset, limit));
  });
  app.get('/api/events', async (req, res) => {
    const asked = runParam(req);
    if (asked === null) {
      res.status(400).json({ error: '?run= must be a run id' });
      return;
    }
    await live.subscribe(asked ?? '', res);
  });

  const actions = express.Router();
  actions.use(requireActionHeader(), express.json({ limit: BODY_LIMIT }), (_req, res, next) => {
    if (config.readOnly)
      res.status(403).json({ error: 'this dashboard is read-only (DASHBOARD_READONLY=true)' });
    else next();
  });
  const actionTarget = async (
    req: Request,
    res: Response,
  ): Promise<{ run: RunStore; reason: string } | null> => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const runId = typeof body.run === 'string' ? body.run : '';
    if (!nameSchema.safeParse(runId).success) {
      res.status(400).json({ error: '"run" must be a run id' });
      return null;
    }
    const run = new RunStore(redis, queue, runId, queues.length);
    if (!(await run.exists())) {
      res.status(404).json({ error: `no run "${runId}" on queue "${queue}"` });
      return null;
    }
    const reason =
      typeof body.reason === 'string' && body.reason.trim()
        ? body.reason.trim().slice(0, 200)
        : 'cancelled from the dashboard';
    return { run, reason };
  };
  actions.post('/cancel-consumer', async (req, res) => {
    const target = await actionTarget(req, res);
    if (!target) return;
    const consumer = (req.body as Record<string, unknown>).consumer;
    if (typeof consumer !== 'string' || !nameSchema.safeParse(consumer).success) {
      res.status(400).json({ error: '"consumer" must be a consumer id' });
      return;
    }
    if ((await redis.hexists(target.run.keys.consumers, consumer)) !== 1) {
      res.status(404).json({ error: `no consumer "${consumer}" in run "${target.run.runId}"` });
      return;
    }
    await target.run.requestCancel(consumer, target.reason);
    log.info(
      { runId: target.run.runId, consumerId: consumer, reason: target.reason },
      'consumer cancel requested',
    );
    res.status(202).json({ ok: true, run: target.run.runId, consumer });
  });
  actions.post('/cancel-run', async (req, res) => {
    const target = await actionTarget(req, res);
    if (!target) return;
    const r = await target.run.cancel({
      by: `the dashboard (from ${req.ip ?? 'an unknown address'})`,
      reason: target.reason,
    });
    log.info({ runId: target.run.runId, reason: target.reason, ...r }, 'run cancel requested');
    // A joined run is left as it is, and the answer says so.
    res.status(r.outcome === 'joined' ? 200 : 202).json({ ok: true, run: target.run.runId, ...r });
  });
  actions.post('/cancel-job', async (req, res) => {
    const target = await actionTarget(req, res);
    if (!target) return;
    const job = (req.body as Record<string, unknown>).job;
    if (typeof job !== 'string' || !/^[\w.~+=@-]{1,200}$/.test(job)) {
      res.status(400).json({ error: '"job" must be a job id' });
      return;
    }
    const r = await target.run.cancelJob(job);
    log.info({ runId: target.run.runId, jobId: job, reason: target.reason, ...r }, 'job cancel requested');
    if (r.outcome === 'unknown') {
      res.status(404).json({ error: `no job "${job}" in run "${target.run.runId}"` });
      return;
    }
    const done = r.outcome === 'finished' || r.outcome === 'joined';
    res.status(done ? 200 : 202).json({ ok: true, run: target.run.runId, job, outcome: r.outcome });
  });
  app.use('/api/actions', actions);

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
