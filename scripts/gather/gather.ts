import { randomBytes } from 'node:crypto';
import type { Queue } from 'bullmq';
import { duplicateClient, type RedisClient } from '../../shared/redis.js';
import type { ConsumerConfig } from '../../consumers/config.js';
import { startConsumer } from '../../consumers/consumer.js';
import { createProducer } from '../../producers/producer.js';
import type { JobRegistry } from '../../shared/jobs/registry.js';
import type { Logger } from '../../shared/logger.js';
import { jobOptions, keepOf, type JobData, type RetryPolicy } from '../../shared/queue.js';
import type { RunResult } from '../../shared/run/outcomes.js';
import { readRunResults } from '../../shared/run/run-results.js';
import { parseRunEvent, RunStore } from '../../shared/run/run-store.js';

export type GatherDeps = {
  redis: RedisClient;
  queue: Queue<JobData>;
  registry: JobRegistry;
  log: Logger;
  host: string;
  pid: number;
  consumerConfig: Omit<ConsumerConfig, 'runId' | 'consumerId' | 'concurrency'>;
};

/**
 * Puts n `sleep` jobs (values 0..n-1) in a fresh run, then waits for every one and returns one result
 * per job in put order, each with its outcome (as asyncio's `gather(return_exceptions=True)`: a
 * failure takes its slot). With no consumer attached to the queue it starts one in this process
 * (cancelled by the join, like any run's consumers).
 */
export async function gather(
  n: number,
  jobMs: number,
  retry: RetryPolicy,
  deps: GatherDeps,
): Promise<RunResult[]> {
  const { redis, queue, log } = deps;
  const runId = `gather-${Date.now()}-${randomBytes(3).toString('hex')}`;
  const run = new RunStore(redis, queue.name, runId);
  // The run keeps each job's return value, so results come back in put order once it joins.
  await run.create(
    1,
    deps.consumerConfig.leaseMs,
    undefined,
    [],
    '',
    { maxJobBytes: 64 * 1024, maxRunBytes: 64 * 1024 * 1024 },
    keepOf(retry),
  );
  await run.registerProducer('gather', { host: deps.host, pid: deps.pid }, deps.consumerConfig.leaseMs);
  const subscriber = duplicateClient(redis, 'conveyor:gather-events');
  let wake: () => void = () => undefined;
  subscriber.on('message', (_channel: string, message: string) => {
    if (parseRunEvent(message)?.type === 'joined') wake();
  });
  await subscriber.subscribe(run.keys.events);
  try {
    const workers = await queue.getWorkersCount().catch(() => 0);
    const own =
      workers === 0
        ? await startConsumer(
            {
              ...deps.consumerConfig,
              runId,
              consumerId: `gather-${deps.pid}`,
              concurrency: Math.max(1, n),
              // gather enqueues on the one queue it names
              shards: 1,
            },
            { redis, registry: deps.registry, log, host: deps.host, pid: deps.pid },
          )
        : null;
    log.info({ runId, jobs: n, ownConsumer: own !== null }, 'gather: enqueuing');
    const producer = createProducer({
      run,
      registry: deps.registry,
      producerId: 'gather',
      jobOptions: jobOptions(retry),
    });
    await producer.putMany(
      Array.from({ length: n }, (_, i) => ({ type: 'sleep', payload: { value: i, ms: jobMs } })),
    );
    await producer.done();
    // The join: the joined event, with a look every second in case a message was missed.
    while (!(await run.isJoined()))
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 1_000);
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    // One slot per put, in put order (only this run's one producer puts, without keys).
    const results = await readRunResults(redis, run);
    if (own) await own.exited;
    return results;
  } finally {
    subscriber.disconnect();
  }
}
