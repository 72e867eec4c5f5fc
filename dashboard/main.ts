import type { Env } from '../shared/config.js';
import { commandArgsOrExit } from '../shared/args.js';
import { commands } from '../shared/commands.js';
import { QueueEvents } from 'bullmq';
import { Registry } from 'prom-client';
import { queuePrefix } from '../shared/keys.js';
import { registerDefaultMetrics } from '../shared/metrics/process-metrics.js';
import { registerRunMetrics } from '../shared/metrics/run-metrics.js';
import { checkInput, startProcess, isEntryModule } from '../shared/process.js';
import { openQueues } from '../shared/queue.js';
import { closeRedis, createRedis, redactUrl, waitUntilReady } from '../shared/redis.js';
import { makeCloser, onShutdownSignal } from '../shared/shutdown.js';
import { startTracingFromEnv } from '../shared/tracing/index.js';
import { createApp } from './app.js';
import { loadDashboardConfig } from './config.js';
import { startServer, type RunningServer } from './server.js';
/** `conveyor dashboard`: the dashboard as a process, until a signal. */
export async function main(argv: readonly string[], env: Env): Promise<void> {
  const started =
    commandArgsOrExit(commands.dashboard, argv, process) &&
    startProcess('dashboard', loadDashboardConfig, env, process);
  if (started) {
    const { config, log } = started;
    // Its cancel buttons may join a run: then this process ends the run's trace.
    const tracing = await checkInput('dashboard', process, () =>
      startTracingFromEnv(env, 'conveyor-dashboard', log),
    );
    if (!tracing) process.exit(2);
    const redis = createRedis(config, log, 'conveyor:dashboard');
    const queues = openQueues(config.queue, config.shards, redis);
    // BullMQ's "drained" is per BullMQ queue: with shards, one draining says nothing about the queue, so
    // the live page infers drained from the summed counts instead of listening to k event streams.
    // QueueEvents blocks on its stream, so it gets a connection of its own.
    const eventsRedis =
      config.shards === 1 ? createRedis(config, log, 'conveyor:dashboard-events') : undefined;
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
    const dashboard = createApp({ config, redis, queues, queueEvents, log, metrics, watchDefault: true });
    let http: RunningServer | undefined;
    let stopping = false;
    const close = makeCloser(
      () => [
        { name: 'http', run: () => http?.close() ?? Promise.resolve(dashboard.close()) },
        { name: 'queue-events', run: () => queueEvents?.close() ?? Promise.resolve() },
        { name: 'metrics', run: () => runMetrics.close() },
        { name: 'queues', run: () => Promise.all(queues.map((q) => q.close())) },
        {
          name: 'redis',
          run: () => Promise.all([eventsRedis ? closeRedis(eventsRedis) : undefined, closeRedis(redis)]),
        },
        { name: 'tracing', run: () => tracing.shutdown() },
      ],
      log,
      Math.max(1_000, Math.floor(config.shutdownGraceMs / 2)),
    );
    onShutdownSignal(process, log, config.shutdownGraceMs, () => {
      stopping = true;
      void close().then(() => {
        log.info('dashboard stopped');
        process.exitCode = 0;
      });
    });
    try {
      log.info(
        {
          redis: redactUrl(config.redisUrl),
          queue: config.queue,
          shards: config.shards,
          readOnly: config.readOnly,
        },
        'dashboard starting',
      );
      // Serve at once (healthz answers, readyz says 503) rather than wait for Redis in silence.
      http = await startServer(dashboard, { host: config.host, port: config.port });
      if (config.access.kind === 'open') {
        log.warn(
          { host: config.host },
          'no DASHBOARD_USER/DASHBOARD_PASSWORD or DASHBOARD_TOKEN set: listening on this machine only (127.0.0.1); set credentials to serve other hosts',
        );
      } else {
        log.info({ auth: config.access.kind }, 'dashboard requires credentials');
      }
      log.info({ url: http.url }, `dashboard listening on ${http.url}`);
      process.stdout.write(`dashboard: ${http.url}\n`);
      await waitUntilReady(redis, log);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (stopping) log.info('stopped before start-up finished');
      else if (code === 'EADDRINUSE')
        log.error(`port ${config.port} is in use: set DASHBOARD_PORT to a free port (or 0 for any)`);
      else log.error({ err }, 'dashboard failed to start');
      await close();
      process.exitCode = stopping ? 0 : 1;
    }
  }
}

if (isEntryModule(import.meta.url, process.argv[1])) await main(process.argv.slice(2), process.env);
