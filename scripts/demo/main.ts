import { isEntryModule } from '../../shared/process.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { endedWell, endSummary, type ChildExit } from './end-summary.js';
import { createInterface } from 'node:readline';
import { commandArgsOrExit } from '../../shared/args.js';
import { commands } from '../../shared/commands.js';
import { loadConsumerConfig } from '../../consumers/config.js';
import { loadProducerConfig } from '../../producers/config.js';
import { loadDashboardConfig } from '../../dashboard/config.js';
import { bool, ConfigError, int, name, parseEnv, type Env } from '../../shared/config.js';
import { createLogger } from '../../shared/logger.js';
import { keepOf, openQueues } from '../../shared/queue.js';
import { closeRedis, createRedis, redactUrl, waitUntilReady } from '../../shared/redis.js';
import {
  findRedisServer,
  NO_REDIS_SERVER_MESSAGE,
  startRedisCluster,
  startRedisServer,
} from '../../shared/redis-server.js';
import { roleCommand, runningCompiled, type Role } from '../../shared/roles.js';
import { RunStore } from '../../shared/run/run-store.js';
import { readRunStatus } from '../../shared/run/status.js';
import { pickPort, startDashboardChild, type DashboardChild } from './dashboard-child.js';
import { progressLine, readableLogLine } from './progress.js';
import { makeSignalCounter } from '../../shared/shutdown.js';

/**
 * `npm start`: the whole pipeline as processes. Starts a private Redis when REDIS_URL is unset, creates
 * a run (DEMO_CLUSTER=n: a local Redis Cluster of n masters, each with a replica, the queue spread
 * over SHARDS, by default n, shards), starts the dashboard (DASHBOARD_PORT, else a free port), launches PRODUCERS producer and
 * CONSUMERS consumer processes, shows live progress, prints the join, stops the dashboard (or keeps it
 * until Ctrl-C with DEMO_KEEP_DASHBOARD=true), and exits 0 when every process exited 0.
 */
async function runDemo(env: Env): Promise<number> {
  let demo;
  try {
    demo = parseEnv(
      {
        PRODUCERS: int(3, 0, 1_000),
        CONSUMERS: int(2, 0, 1_000),
        RUN_ID: name(`demo-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`),
        CHILD_LOG_LEVEL: name('warn'),
        DASHBOARD_PORT: int(3000, 0, 65_535),
        DEMO_DASHBOARD: bool(true),
        DEMO_KEEP_DASHBOARD: bool(false),
        DEMO_CLUSTER: int(0, 0, 16),
      },
      env,
    );
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`demo: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  const log = createLogger({ level: env.LOG_LEVEL ?? 'info', service: 'demo', pretty: process.stderr.isTTY });

  let server: { stop(): Promise<void> } | undefined;
  let redisUrl = env.REDIS_URL;
  let shards = env.SHARDS;
  if (redisUrl && demo.DEMO_CLUSTER > 0) {
    process.stderr.write('demo: DEMO_CLUSTER starts a local cluster, so it needs REDIS_URL unset\n');
    return 2;
  }
  if (!redisUrl) {
    const binary = findRedisServer(env.PATH ?? '');
    if (!binary) {
      process.stderr.write(`demo: ${NO_REDIS_SERVER_MESSAGE}\n`);
      return 1;
    }
    if (demo.DEMO_CLUSTER > 0) {
      const cluster = await startRedisCluster({ binary, masters: demo.DEMO_CLUSTER, replicas: 1 });
      server = cluster;
      redisUrl = cluster.url;
      shards ??= String(demo.DEMO_CLUSTER);
      process.stdout.write(
        `Started a local Redis Cluster: ${demo.DEMO_CLUSTER} masters, each with a replica, at ${redisUrl}; the queue is spread over ${shards} shards.\n`,
      );
    } else {
      const single = await startRedisServer({ binary });
      server = single;
      redisUrl = single.url;
      process.stdout.write(`Started a private Redis at ${redisUrl} (set REDIS_URL to use your own).\n`);
    }
  }
  const childEnv: Env = {
    ...env,
    REDIS_URL: redisUrl,
    ...(shards === undefined ? {} : { SHARDS: shards }),
    RUN_ID: demo.RUN_ID,
    PRODUCERS: String(demo.PRODUCERS),
    LOG_LEVEL: demo.CHILD_LOG_LEVEL,
  };
  let producerConfig;
  try {
    // Fail here, once, rather than in every child.
    producerConfig = loadProducerConfig(childEnv);
    loadConsumerConfig(childEnv);
    if (demo.DEMO_DASHBOARD) loadDashboardConfig(childEnv);
  } catch (err) {
    await server?.stop();
    if (err instanceof ConfigError) {
      process.stderr.write(`demo: ${err.message}\n`);
      return 2;
    }
    throw err;
  }

  // On a terminal, clear the progress line before printing above it; elsewhere print the line as is.
  const printAbove = (line: string) =>
    process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : ''}${line}\n`);
  const redis = createRedis(producerConfig, log, 'conveyor:demo');
  const queues = openQueues(producerConfig.queue, producerConfig.shards, redis);
  const children: { label: string; child: ChildProcess; exit: Promise<ChildExit> }[] = [];
  let dashboard: DashboardChild | undefined;
  try {
    await waitUntilReady(redis, log);
    const run = new RunStore(redis, producerConfig.queue, demo.RUN_ID, producerConfig.shards);
    await run.create(
      demo.PRODUCERS,
      producerConfig.leaseMs,
      producerConfig.retentionMs,
      producerConfig.callbacks,
      '',
      producerConfig.collectResults,
      keepOf(producerConfig.retry),
    );
    const startedAt = Date.now();
    let interrupted = 0;
    const count = makeSignalCounter();
    const onSignal = () => {
      if (count() === 'echo') return;
      interrupted++;
      process.stdout.write(
        `\n${interrupted === 1 ? 'Stopping every process gracefully (Ctrl-C again to force)...' : 'Forcing.'}\n`,
      );
      for (const { child } of children)
        if (child.exitCode === null) child.kill(interrupted === 1 ? 'SIGTERM' : 'SIGKILL');
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // Said only once a Ctrl-C is handled.
    process.stdout.write(
      `Run ${demo.RUN_ID} on queue ${producerConfig.queue} at ${redactUrl(redisUrl)}: ` +
        `${demo.PRODUCERS} producers, ${demo.CONSUMERS} consumers. Ctrl-C stops everything.\n`,
    );

    // Started before the producers and consumers so the page can show the whole run; not waited for yet.
    let dashboardStarting: Promise<DashboardChild> | undefined;
    if (demo.DEMO_DASHBOARD) {
      const port = await pickPort(demo.DASHBOARD_PORT);
      if (demo.DASHBOARD_PORT !== 0 && port !== demo.DASHBOARD_PORT)
        process.stdout.write(`Port ${demo.DASHBOARD_PORT} is busy: the dashboard uses ${port}.\n`);
      dashboardStarting = startDashboardChild({ ...childEnv, DASHBOARD_PORT: String(port) }, printAbove);
    }

    const launch = (role: Role, index: number) => {
      const label = `${role}-${index}`;
      const { command, args } = roleCommand(role, runningCompiled);
      const child = spawn(command, args, {
        env: { ...childEnv, [`${role.toUpperCase()}_ID`]: `${demo.RUN_ID}-${label}` },
        stdio: ['ignore', 'pipe', 'pipe'],
        // Its own process group: the terminal's Ctrl-C reaches only the demo, which then sends each
        // child one SIGTERM (two signals would read as "force").
        detached: true,
      });
      for (const stream of [child.stdout, child.stderr]) {
        createInterface({ input: stream }).on('line', (line) =>
          printAbove(`[${label}] ${readableLogLine(line)}`),
        );
      }
      const exit = new Promise<ChildExit>((resolve) =>
        child.once('exit', (code, signal) => resolve({ code, signal })),
      );
      children.push({ label, child, exit });
    };
    if (interrupted === 0) {
      for (let i = 1; i <= demo.CONSUMERS; i++) launch('consumer', i);
      for (let i = 1; i <= demo.PRODUCERS; i++) launch('producer', i);
    }
    if (dashboardStarting) {
      dashboard = await dashboardStarting;
      if (dashboard.url)
        process.stdout.write(
          `Dashboard: ${dashboard.url} (Bull Board at ${dashboard.url}/queues); ` +
            (demo.DEMO_KEEP_DASHBOARD
              ? 'it stays up after the join until Ctrl-C.\n'
              : 'it stops when the demo ends (DEMO_KEEP_DASHBOARD=true keeps it up after the join).\n'),
        );
      else process.stdout.write('The dashboard did not start (see its output above); going on without it.\n');
    }

    const tty = process.stdout.isTTY;
    let lastLine = '';
    let lastPrinted = 0;
    const show = async () => {
      const [status, ...counts] = await Promise.all([
        readRunStatus(redis, producerConfig.queue, demo.RUN_ID, producerConfig.leaseMs),
        ...queues.map((q) => q.getJobCounts('waiting', 'prioritized', 'delayed', 'active')),
      ]);
      if (!status) return null;
      const depth = counts.reduce(
        (n, c) => n + (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0) + (c.active ?? 0),
        0,
      );
      const line = progressLine(status, depth);
      if (tty) process.stdout.write(`\r\x1b[K${line}`);
      else if (line !== lastLine && Date.now() - lastPrinted > 1_000) {
        process.stdout.write(`${line}\n`);
        lastPrinted = Date.now();
      }
      lastLine = line;
      return status;
    };
    const ticker = setInterval(() => void show().catch(() => undefined), 250);
    const exits = await Promise.all(children.map((c) => c.exit));
    clearInterval(ticker);
    const final = await show();
    process.stdout.write('\n');
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);

    process.stdout.write(`${endSummary(demo.RUN_ID, final, startedAt, interrupted > 0, children, exits)}\n`);
    const failed = children.filter((_, i) => !endedWell(exits[i]!, interrupted > 0));

    let dashboardCode: number | null = 0;
    if (dashboard?.url) {
      if (demo.DEMO_KEEP_DASHBOARD && interrupted === 0) {
        process.stdout.write(
          `The dashboard stays up at ${dashboard.url} (DEMO_KEEP_DASHBOARD=true): Ctrl-C to stop it.\n`,
        );
        await new Promise<void>((resolve) => {
          process.once('SIGINT', () => resolve());
          process.once('SIGTERM', () => resolve());
        });
      }
      dashboardCode = await dashboard.stop();
      process.stdout.write('The dashboard has stopped.\n');
      if (dashboardCode !== 0)
        process.stdout.write(`  the dashboard exited with code ${String(dashboardCode)}\n`);
    }
    if (!env.REDIS_URL)
      process.stdout.write(
        "The demo's private Redis stops now, and the run with it: to look at runs afterwards (conveyor status), " +
          'give the demo your own Redis with REDIS_URL=redis://127.0.0.1:6379.\n',
      );
    return failed.length === 0 && dashboardCode === 0 && (final?.join.state === 'joined' || interrupted > 0)
      ? 0
      : 1;
  } finally {
    for (const { child } of children)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await dashboard?.stop(2_000);
    await Promise.all(queues.map((q) => q.close()));
    await closeRedis(redis);
    await server?.stop();
  }
}

/** `conveyor demo`. */
export async function main(argv: readonly string[], env: Env): Promise<void> {
  if (commandArgsOrExit(commands.demo, argv, process)) process.exitCode = await runDemo(env);
}

if (isEntryModule(import.meta.url, process.argv[1])) await main(process.argv.slice(2), process.env);
