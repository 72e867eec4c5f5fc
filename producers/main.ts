import { commandArgsOrExit } from '../shared/args.js';
import { commands } from '../shared/commands.js';
import { createReadStream } from 'node:fs';
import { hostname } from 'node:os';
import { loadJobRegistry } from '../shared/jobs/index.js';
import { startProcessEndpoint } from '../shared/metrics/process-endpoint.js';
import { createProducerMetrics } from '../shared/metrics/process-metrics.js';
import { checkInput, startProcess } from '../shared/process.js';
import { openQueues } from '../shared/queue.js';
import { closeRedis, createRedis, redactUrl, RedisConfigError, waitUntilReady } from '../shared/redis.js';
import { assertNoEviction, EvictionPolicyError } from '../shared/redis-policy.js';
import { markRunSeen, resolveRunId } from '../shared/run/current-run.js';
import { RunError, RunStore } from '../shared/run/run-store.js';
import { makeCloser, onShutdownSignal } from '../shared/shutdown.js';
import { startTracingFromEnv } from '../shared/tracing/index.js';
import { loadProducerConfig } from './config.js';
import { checkReadable } from './jobs-file.js';
import { JobLineError } from './job-lines.js';
import { checkProducible, runProducer } from './run-producer.js';

const started =
  commandArgsOrExit(commands.producer, process) && startProcess('producer', loadProducerConfig, process);
if (started) {
  const { config, log: baseLog } = started;
  const log = baseLog.child({ runId: config.runId, producerId: config.producerId });
  const registry = await checkInput('producer', process, async () => {
    const r = await loadJobRegistry(config.jobModules, process.cwd());
    checkProducible(config, r);
    if (config.jobsFile !== null) await checkReadable(config.jobsFile);
    return r;
  });
  if (!registry) process.exit(2);
  const tracing = await checkInput('producer', process, () =>
    startTracingFromEnv(process.env, 'conveyor-producer', log),
  );
  if (!tracing) process.exit(2);
  const jobsInput =
    config.jobsFile === null
      ? undefined
      : config.jobsFile === '-'
        ? process.stdin
        : createReadStream(config.jobsFile);
  const metrics = await startProcessEndpoint(config.metrics, 'producer', log);
  const redis = createRedis(config, log, `conveyor:producer:${config.producerId}`);
  // A lost connection is said once by the connection itself (waiting for Redis, reachable again).
  const queues = openQueues(config.queue, config.shards, redis, (message) => {
    if (redis.status === 'ready') log.warn({ err: message }, 'queue error');
  });
  const stop = new AbortController();
  const close = makeCloser(
    () => [
      // BullMQ's close waits for the connection: without one there is nothing of theirs to close.
      {
        name: 'queues',
        run: () => (redis.status === 'ready' ? Promise.all(queues.map((q) => q.close())) : Promise.resolve()),
      },
      { name: 'redis', run: () => closeRedis(redis) },
      { name: 'metrics', run: () => metrics.close() },
      { name: 'tracing', run: () => tracing.shutdown() },
    ],
    log,
    config.shutdownGraceMs,
  );
  onShutdownSignal(process, log, config.shutdownGraceMs, () => {
    metrics.setReady(false);
    stop.abort();
    // Still waiting for Redis at start-up: nothing enqueued yet, so give up the wait.
    if (redis.status !== 'ready') redis.disconnect();
  });
  try {
    log.info(
      { redis: redactUrl(config.redisUrl), queue: config.queue, shards: config.shards },
      'producer starting',
    );
    await waitUntilReady(redis, log, stop.signal);
    await assertNoEviction(redis);
    metrics.setReady(!stop.signal.aborted);
    // RUN_ID=auto: the queue's open run, or the next one (shared/run/current-run.ts).
    const resolved = await resolveRunId(redis, config.queue, config.runId);
    const { runId, source } = resolved;
    if (source !== 'explicit') log.info({ resolvedRunId: runId, source }, `RUN_ID=auto: run ${runId}`);
    const outcome = await runProducer(
      { ...config, runId },
      {
        queues,
        run: new RunStore(redis, config.queue, runId, config.shards),
        registry,
        log,
        host: hostname(),
        pid: process.pid,
        observer: createProducerMetrics(metrics.registry, config.queue),
        jobsInput,
      },
      stop.signal,
    );
    metrics.setReady(false);
    await markRunSeen(redis, config.queue, resolved);
    process.exitCode = outcome.lost ? 1 : 0;
    await metrics.linger(stop.signal);
  } catch (err) {
    if (err instanceof JobLineError) {
      // Not reported done: run again with the same RUN_ID and PRODUCER_ID, and the lines already
      // put are not put again (their keys), while this producer's lease has not run out.
      process.stderr.write(
        `producer: ${err.message}. Nothing after it was put; fix the line and run again with the same RUN_ID and PRODUCER_ID (lines already put are skipped).\n`,
      );
      process.exitCode = 2;
    } else if (stop.signal.aborted && redis.status !== 'ready') {
      log.info('stopped before start-up finished');
      process.exitCode = 0;
    } else {
      // These carry a message that says what to do; anything else gets its stack.
      if (err instanceof RunError || err instanceof RedisConfigError || err instanceof EvictionPolicyError)
        log.error(err.message);
      else log.error({ err }, 'producer failed');
      process.exitCode = 1;
    }
  } finally {
    await close();
  }
}
