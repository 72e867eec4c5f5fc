import type { Env } from '../shared/config.js';
import { commandArgsOrExit } from '../shared/args.js';
import { commands } from '../shared/commands.js';
import { loadJobRegistry } from '../shared/jobs/index.js';
import { startProcessEndpoint } from '../shared/metrics/process-endpoint.js';
import { createConsumerMetrics } from '../shared/metrics/process-metrics.js';
import { checkInput, startProcess, isEntryModule } from '../shared/process.js';
import { RedisConfigError } from '../shared/redis.js';
import { EvictionPolicyError } from '../shared/redis-policy.js';
import { RunError } from '../shared/run/run-store.js';
import { onShutdownSignal } from '../shared/shutdown.js';
import { startTracingFromEnv } from '../shared/tracing/index.js';
import { loadConsumerConfig } from './config.js';
import { launchConsumer, type ConsumerClient } from './launch.js';

/** How long an ended consumer may wait for its connections to close before it exits anyway. */
const EXIT_AFTER_MS = 5_000;
/** `conveyor consumer`: one consumer process, started as the library's startConsumer starts one. */
export async function main(argv: readonly string[], env: Env): Promise<void> {
  const started =
    commandArgsOrExit(commands.consumer, argv, process) &&
    startProcess('consumer', loadConsumerConfig, env, process);
  if (started) {
    const { config, log: baseLog } = started;
    const log = baseLog.child({ runId: config.runId ?? null, consumerId: config.consumerId });
    const registry = await checkInput('consumer', process, () =>
      loadJobRegistry(config.jobModules, process.cwd()),
    );
    if (!registry) process.exit(2);
    const tracing = await checkInput('consumer', process, () =>
      startTracingFromEnv(env, 'conveyor-consumer', log),
    );
    if (!tracing) process.exit(2);
    const metrics = await startProcessEndpoint(config.metrics, 'consumer', log);
    let consumer: ConsumerClient | undefined;
    const signalled = new AbortController();
    onShutdownSignal(process, log, config.shutdownGraceMs, (signal) => {
      metrics.setReady(false);
      signalled.abort();
      // Before start-up finishes nothing is held: the aborted signal ends the wait for Redis.
      if (consumer) void consumer.stop(signal);
    });
    try {
      consumer = await launchConsumer(config, {
        registry,
        log: baseLog,
        observer: createConsumerMetrics(metrics.registry, config.queue),
        signal: signalled.signal,
      });
      if (signalled.signal.aborted) void consumer.stop('signal during start-up');
      else metrics.setReady(true);
      const exit = await consumer.exited;
      metrics.setReady(false);
      process.exitCode = exit.state === 'aborted' ? 1 : 0;
      await metrics.linger(signalled.signal);
    } catch (err) {
      if (signalled.signal.aborted) {
        log.info('stopped before start-up finished');
        process.exitCode = 0;
      } else {
        if (err instanceof RedisConfigError || err instanceof EvictionPolicyError || err instanceof RunError)
          log.error(err.message);
        else log.error({ err }, 'consumer failed');
        process.exitCode = 1;
      }
    } finally {
      await metrics.close();
      await tracing.shutdown();
      // The consumer has ended and said so; a connection BullMQ could not close (one stuck
      // reconnecting through a Redis Cluster failover) must not keep the process alive.
      setTimeout(() => {
        log.warn({ afterMs: EXIT_AFTER_MS }, 'a Redis connection did not close: exiting anyway');
        process.exit();
      }, EXIT_AFTER_MS).unref();
    }
  }
}

if (isEntryModule(import.meta.url, process.argv[1])) await main(process.argv.slice(2), process.env);
