import { commandArgsOrExit } from '../shared/args.js';
import { commands } from '../shared/commands.js';
import { hostname } from 'node:os';
import { loadJobRegistry } from '../shared/jobs/index.js';
import { startProcessEndpoint } from '../shared/metrics/process-endpoint.js';
import { createConsumerMetrics } from '../shared/metrics/process-metrics.js';
import { checkInput, startProcess } from '../shared/process.js';
import { closeRedis, createRedis, redactUrl, RedisConfigError, waitUntilReady } from '../shared/redis.js';
import { assertNoEviction, EvictionPolicyError } from '../shared/redis-policy.js';
import { markRunSeen, resolveRunId } from '../shared/run/current-run.js';
import { RunError } from '../shared/run/run-store.js';
import { onShutdownSignal } from '../shared/shutdown.js';
import { startTracingFromEnv } from '../shared/tracing/index.js';
import { loadConsumerConfig } from './config.js';
import { startConsumer, type ConsumerHandle } from './consumer.js';

/** How long an ended consumer may wait for its connections to close before it exits anyway. */
const EXIT_AFTER_MS = 5_000;

const started =
  commandArgsOrExit(commands.consumer, process) && startProcess('consumer', loadConsumerConfig, process);
if (started) {
  const { config, log: baseLog } = started;
  const log = baseLog.child({ runId: config.runId ?? null, consumerId: config.consumerId });
  const registry = await checkInput('consumer', process, () =>
    loadJobRegistry(config.jobModules, process.cwd()),
  );
  if (!registry) process.exit(2);
  const tracing = await checkInput('consumer', process, () =>
    startTracingFromEnv(process.env, 'conveyor-consumer', log),
  );
  if (!tracing) process.exit(2);
  const metrics = await startProcessEndpoint(config.metrics, 'consumer', log);
  const redis = createRedis(config, log, `conveyor:consumer:${config.consumerId}`);
  let consumer: ConsumerHandle | undefined;
  let stopping = false;
  const signalled = new AbortController();
  onShutdownSignal(process, log, config.shutdownGraceMs, (signal) => {
    stopping = true;
    metrics.setReady(false);
    signalled.abort();
    // Before start-up finishes there is nothing held: dropping the connection ends the wait for Redis.
    if (consumer) void consumer.stop(signal);
    else redis.disconnect();
  });
  try {
    log.info(
      { redis: redactUrl(config.redisUrl), queue: config.queue, shards: config.shards },
      'consumer starting',
    );
    await waitUntilReady(redis, log, signalled.signal);
    await assertNoEviction(redis);
    // RUN_ID=auto: the queue's open run, or the next one (shared/run/current-run.ts).
    const resolved = config.runId && (await resolveRunId(redis, config.queue, config.runId));
    if (resolved && resolved.source !== 'explicit')
      log.info(
        { resolvedRunId: resolved.runId, source: resolved.source },
        `RUN_ID=auto: run ${resolved.runId}`,
      );
    consumer = await startConsumer(resolved ? { ...config, runId: resolved.runId } : config, {
      redis,
      registry,
      log,
      host: hostname(),
      pid: process.pid,
      observer: createConsumerMetrics(metrics.registry, config.queue),
    });
    if (stopping) void consumer.stop('signal during start-up');
    else metrics.setReady(true);
    const exit = await consumer.exited;
    metrics.setReady(false);
    if (resolved) await markRunSeen(redis, config.queue, resolved);
    process.exitCode = exit.state === 'aborted' ? 1 : 0;
    await metrics.linger(signalled.signal);
  } catch (err) {
    if (stopping) {
      log.info('stopped before start-up finished');
      process.exitCode = 0;
    } else {
      if (err instanceof RedisConfigError || err instanceof EvictionPolicyError || err instanceof RunError)
        log.error(err.message);
      else log.error({ err }, 'consumer failed');
      process.exitCode = 1;
    }
  } finally {
    await closeRedis(redis);
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
