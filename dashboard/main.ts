import { QueueEvents } from 'bullmq';
import { Registry } from 'prom-client';
import { queuePrefix } from '../shared/keys.js';
import { registerDefaultMetrics } from '../shared/metrics/process-metrics.js';
import { registerRunMetrics } from '../shared/metrics/run-metrics.js';
import { startProcess } from '../shared/process.js';
import { openQueue } from '../shared/queue.js';
import { closeRedis, createRedis, redactUrl, waitUntilReady } from '../shared/redis.js';
import { makeCloser, onShutdownSignal } from '../shared/shutdown.js';
import { createApp } from './app.js';
import { loadDashboardConfig } from './config.js';
import { startServer, type RunningServer } from './server.js';

const started = startProcess('dashboard', loadDashboardConfig, process);
if (started) {
  const { config, log } = started;
  const redis = createRedis(config, log, 'conveyor:dashboard');
  // QueueEvents blocks on its stream, so it gets a connection of its own.
  const eventsRedis = createRedis(config, log, 'conveyor:dashboard-events');
  const queue = openQueue(config.queue, redis);
  const queueEvents = new QueueEvents(config.queue, {
    connection: eventsRedis,
    prefix: queuePrefix(config.queue),
  });
  queueEvents.on('error', (err) => log.debug({ err: err.message }, 'queue events error'));
  const metrics = new Registry();
  registerDefaultMetrics(metrics, 'dashboard');
  const runMetrics = registerRunMetrics(metrics, {
    redis,
    queues: [config.queue],
    leaseMs: config.leaseMs,
    log,
  });
  const dashboard = createApp({ config, redis, queue, queueEvents, log, metrics, watchDefault: true });
  let http: RunningServer | undefined;
  let stopping = false;
  const close = makeCloser(
    () => [
      { name: 'http', run: () => http?.close() ?? Promise.resolve(dashboard.close()) },
      { name: 'queue-events', run: () => queueEvents.close() },
      { name: 'metrics', run: () => runMetrics.close() },
      { name: 'queue', run: () => queue.close() },
      { name: 'redis', run: () => Promise.all([closeRedis(eventsRedis), closeRedis(redis)]) },
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
      { redis: redactUrl(config.redisUrl), queue: config.queue, readOnly: config.readOnly },
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
