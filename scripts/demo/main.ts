import { isEntryModule } from '../../shared/process.js';
import { endedWell, endSummary, type ChildExit } from './end-summary.js';
import { commandArgsOrExit } from '../../shared/args.js';
import { commands } from '../../shared/commands.js';
import type { ProducerConfig } from '../../producers/config.js';
import { ConfigError, type Env } from '../../shared/config.js';
import { createLogger, type Logger } from '../../shared/logger.js';
import { keepOf, openQueues } from '../../shared/queue.js';
import { closeRedis, createRedis, redactUrl, waitUntilReady, type RedisClient } from '../../shared/redis.js';
import { RunStore } from '../../shared/run/run-store.js';
import type { RunStatus } from '../../shared/run/status.js';
import { makeSignalCounter } from '../../shared/shutdown.js';
import { killLeftChildren, launchChildren, signalChildren, type DemoChild } from './children.js';
import { checkChildConfigs, childEnvOf, loadDemoConfig, type DemoConfig } from './config.js';
import type { DashboardChild } from './dashboard-child.js';
import { announceDashboard, closeDashboard, startDemoDashboard } from './demo-dashboard.js';
import { provideRedis, type DemoRedis } from './demo-redis.js';
import { followUntilExit } from './follow-run.js';
import { printAbove } from './terminal.js';

/** What the demo has settled before its run starts. */
type Prepared = {
  startup: StartupSignals;
  env: Env;
  demo: DemoConfig;
  log: Logger;
  redis: DemoRedis;
  childEnv: Env;
  config: ProducerConfig;
};

/**
 * `npm start`: the whole pipeline as processes. Starts a private Redis when REDIS_URL is unset, creates
 * a run (DEMO_CLUSTER=n: a local Redis Cluster of n masters, each with a replica, the queue spread
 * over SHARDS, by default n, shards), starts the dashboard (DASHBOARD_PORT, else a free port), launches PRODUCERS producer and
 * CONSUMERS consumer processes, shows live progress, prints the join, stops the dashboard (or keeps it
 * until Ctrl-C with DEMO_KEEP_DASHBOARD=true), and exits 0 when every process exited 0.
 */
async function runDemo(env: Env, startup: StartupSignals): Promise<number | NodeJS.Signals> {
  let demo: DemoConfig;
  try {
    demo = loadDemoConfig(env);
  } catch (err) {
    return configErrorCode(err);
  }
  const log = createLogger({ level: env.LOG_LEVEL ?? 'info', service: 'demo', pretty: process.stderr.isTTY });
  const redis = await provideRedis(env, demo.DEMO_CLUSTER, process);
  if (typeof redis === 'number') return redis;
  const childEnv = childEnvOf(env, demo, redis);
  let config: ProducerConfig;
  try {
    config = checkChildConfigs(childEnv, demo.DEMO_DASHBOARD);
  } catch (err) {
    await redis.server?.stop();
    return configErrorCode(err);
  }
  return runPipeline({ startup, env, demo, log, redis, childEnv, config });
}

/** `demo: <message>` and exit code 2 for a configuration error; anything else is thrown on. */
function configErrorCode(err: unknown): number {
  if (err instanceof ConfigError) {
    process.stderr.write(`demo: ${err.message}\n`);
    return 2;
  }
  throw err;
}

/**
 * Creates the run, starts the dashboard and the processes, follows them to the end, and cleans up.
 * Returns the exit code, or the signal that came before the run was announced.
 */
async function runPipeline(p: Prepared): Promise<number | NodeJS.Signals> {
  const { demo, config } = p;
  const print = printAbove(process);
  const redis = createRedis(config, p.log, 'conveyor:demo');
  const queues = openQueues(config.queue, config.shards, redis);
  const children: DemoChild[] = [];
  let dashboard: DashboardChild | undefined;
  try {
    await waitUntilReady(redis, p.log);
    await createRun(redis, config, demo);
    const early = p.startup.received();
    if (early) return early;
    const startedAt = Date.now();
    p.startup.stop();
    const interrupts = watchInterrupts(children);
    // Said only once a Ctrl-C is handled.
    process.stdout.write(
      `Run ${demo.RUN_ID} on queue ${config.queue} at ${redactUrl(p.redis.url)}: ` +
        `${demo.PRODUCERS} producers, ${demo.CONSUMERS} consumers. Ctrl-C stops everything.\n`,
    );
    // Started before the producers and consumers so the page can show the whole run; not waited for yet.
    const dashboardStart = demo.DEMO_DASHBOARD
      ? await startDemoDashboard(demo.DASHBOARD_PORT, p.childEnv, print, process.stdout)
      : undefined;
    if (interrupts.count() === 0)
      children.push(
        ...launchChildren(
          { consumers: demo.CONSUMERS, producers: demo.PRODUCERS },
          p.childEnv,
          demo.RUN_ID,
          print,
        ),
      );
    if (dashboardStart) {
      dashboard = await dashboardStart.starting;
      announceDashboard(dashboard, demo.DEMO_KEEP_DASHBOARD, process.stdout);
    }
    const run = { redis, queues, queue: config.queue, runId: demo.RUN_ID, leaseMs: config.leaseMs };
    const { exits, final } = await followUntilExit(run, children, process.stdout);
    interrupts.stop();
    return await endRun(p, {
      final,
      exits,
      children,
      startedAt,
      interrupted: interrupts.count() > 0,
      dashboard,
    });
  } finally {
    killLeftChildren(children);
    await dashboard?.stop(2_000);
    await Promise.all(queues.map((q) => q.close()));
    await closeRedis(redis);
    await p.redis.server?.stop();
  }
}

function createRun(redis: RedisClient, config: ProducerConfig, demo: DemoConfig): Promise<boolean> {
  return new RunStore(redis, config.queue, demo.RUN_ID, config.shards).create(
    demo.PRODUCERS,
    config.leaseMs,
    config.retentionMs,
    config.callbacks,
    '',
    config.collectResults,
    keepOf(config.retry),
  );
}

type StartupSignals = { received(): NodeJS.Signals | undefined; stop(): void };

/**
 * Ctrl-C (or SIGTERM) before the run is announced ends the demo by that signal, as it would without
 * a handler, but not before its private Redis is stopped: that Redis runs in a process group of its
 * own, so nothing else would stop it. With a private Redis the signal is kept until the start-up has
 * run (a local Redis answers in milliseconds), and the demo then cleans up and ends by it; a second
 * Ctrl-C ends it at once. With REDIS_URL there is nothing to leave behind, and it ends at once.
 */
function watchStartupSignals(privateRedis: boolean): StartupSignals {
  let received: NodeJS.Signals | undefined;
  const count = makeSignalCounter();
  const onSignal = (signal: NodeJS.Signals) => {
    if (privateRedis && count() !== 'again') received ??= signal;
    else endBySignal(signal);
  };
  const stop = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  const endBySignal = (signal: NodeJS.Signals) => {
    stop();
    process.kill(process.pid, signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return { received: () => received, stop };
}

/**
 * Ctrl-C (or SIGTERM) while the run goes: the first asks every child to stop gracefully (SIGTERM),
 * a second forces them (SIGKILL). A repeat of the same Ctrl-C relayed by a wrapper is not a second.
 */
function watchInterrupts(children: readonly DemoChild[]): { count(): number; stop(): void } {
  let interrupted = 0;
  const count = makeSignalCounter();
  const onSignal = () => {
    if (count() === 'echo') return;
    interrupted++;
    process.stdout.write(
      `\n${interrupted === 1 ? 'Stopping every process gracefully (Ctrl-C again to force)...' : 'Forcing.'}\n`,
    );
    signalChildren(children, interrupted === 1 ? 'SIGTERM' : 'SIGKILL');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    count: () => interrupted,
    stop: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** The end summary, the dashboard's close, and the exit code: 0 when the run joined (or was interrupted) and every process exited well. */
async function endRun(
  p: Prepared,
  end: {
    final: RunStatus | null;
    exits: ChildExit[];
    children: DemoChild[];
    startedAt: number;
    interrupted: boolean;
    dashboard: DashboardChild | undefined;
  },
): Promise<number> {
  const { final, exits, children, interrupted } = end;
  process.stdout.write(`${endSummary(p.demo.RUN_ID, final, end.startedAt, interrupted, children, exits)}\n`);
  const failed = children.filter((_, i) => !endedWell(exits[i]!, interrupted));
  const dashboardCode = await closeDashboard(
    end.dashboard,
    { keep: p.demo.DEMO_KEEP_DASHBOARD, interrupted, untilSignal },
    process.stdout,
  );
  if (!p.env.REDIS_URL)
    process.stdout.write(
      "The demo's private Redis stops now, and the run with it: to look at runs afterwards (conveyor status), " +
        'give the demo your own Redis with REDIS_URL=redis://127.0.0.1:6379.\n',
    );
  return failed.length === 0 && dashboardCode === 0 && (final?.join.state === 'joined' || interrupted)
    ? 0
    : 1;
}

/** Resolves at the next Ctrl-C or SIGTERM. */
function untilSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

/** `conveyor demo`. */
export async function main(argv: readonly string[], env: Env): Promise<void> {
  if (!commandArgsOrExit(commands.demo, argv, process)) return;
  const startup = watchStartupSignals(!env.REDIS_URL);
  const end = await runDemo(env, startup);
  startup.stop();
  // A signal before the run was announced: end by it, now that the private Redis is stopped.
  if (typeof end === 'string') process.kill(process.pid, end);
  else process.exitCode = end;
}

if (isEntryModule(import.meta.url, process.argv[1])) await main(process.argv.slice(2), process.env);
