import type { RedisClient } from '../../shared/redis.js';
import { RunStore } from '../../shared/run/run-store.js';
import type { ConsumerRecord } from '../../shared/run/types.js';

/**
 * Writes a run of `producers` registered producers and `consumers` consumer records into Redis, the
 * way those processes register themselves, without starting any: what a dashboard reads for a run
 * of that many processes. Producers hold their lease for `leaseMs` (then show as lost). Every third
 * consumer is busy with `held` jobs (default 1): many make each row of the consumers table big.
 */
export async function seedBigRun(
  redis: RedisClient,
  queue: string,
  runId: string,
  opts: { producers: number; consumers: number; leaseMs?: number; held?: number },
): Promise<RunStore> {
  const leaseMs = opts.leaseMs ?? 3_600_000;
  const run = new RunStore(redis, queue, runId);
  await run.create(opts.producers, leaseMs);
  const now = Date.now();
  // In slices: one pipeline of 10,000 script calls is fine for Redis but slow for the client.
  for (let from = 0; from < opts.producers; from += 1_000) {
    const ids = Array.from({ length: Math.min(1_000, opts.producers - from) }, (_, i) => from + i);
    await Promise.all(
      ids.map((i) =>
        run.registerProducer(
          `producer-${i}`,
          { host: `host-${i % 97}.example.internal`, pid: 10_000 + i },
          leaseMs,
        ),
      ),
    );
  }
  for (let from = 0; from < opts.consumers; from += 1_000) {
    const ids = Array.from({ length: Math.min(1_000, opts.consumers - from) }, (_, i) => from + i);
    await Promise.all(
      ids.map((i) => {
        const record: ConsumerRecord = {
          id: `consumer-${i}`,
          host: `host-${i % 89}.example.internal`,
          pid: 20_000 + i,
          concurrency: Math.max(4, opts.held ?? 1),
          state: i % 3 === 0 ? 'busy' : 'idle',
          jobsDone: i * 7,
          jobsFailed: i % 11 === 0 ? 1 : 0,
          current:
            i % 3 === 0
              ? Array.from({ length: opts.held ?? 1 }, (_, j) => `${runId}+1+producer-${i}+${i}-${j}`)
              : [],
          startedAt: now - 60_000,
          heartbeatAt: now,
          runs: { [runId]: i * 7 },
        };
        return run.saveConsumer(record);
      }),
    );
  }
  return run;
}
