import type { Env } from '../shared/config.js';
import { commandArgsOrExit } from '../shared/args.js';
import { commands } from '../shared/commands.js';
import { checkInput, startProcess, isEntryModule } from '../shared/process.js';
import { redactUrl, waitUntilReady } from '../shared/redis.js';
import { makeCloser, onShutdownSignal } from '../shared/shutdown.js';
import { startTracingFromEnv } from '../shared/tracing/index.js';
import { loadDashboardConfig } from './config.js';
import { openDashboard, stepTimeoutOf } from './open.js';
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
    const opened = openDashboard(config, { log, watchDefault: true });
    const { dashboard, redis } = opened;
    let http: RunningServer | undefined;
    let stopping = false;
    const close = makeCloser(
      () => [
        { name: 'http', run: () => http?.close() },
        ...opened.closeSteps(),
        { name: 'tracing', run: () => tracing.shutdown() },
      ],
      log,
      stepTimeoutOf(config),
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
