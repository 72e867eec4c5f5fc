import type { Queue } from 'bullmq';
import type { RedisClient } from '../redis.js';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Logger } from '../logger.js';
import { openQueues, type JobData } from '../queue.js';
import { listRuns, readRunStatus, type RunStatus } from '../run/status.js';
import { FailedKinds, type FailedCounts } from './failed-kinds.js';

/** A queue to report on, and how many BullMQ queues it is spread over (its `SHARDS`). */
export type MetricsQueue = { name: string; shards: number };

export type RunMetricsOptions = {
  redis: RedisClient;
  /** Queues to report on; a bare name is an unsharded queue (`{ name, shards: 1 }`). */
  queues: readonly (string | MetricsQueue)[];
  /** As the processes use it: a heartbeat older than this shows a producer or consumer as lost. */
  leaseMs: number;
  /** How many of each queue's latest runs get run-level series (older runs drop out). */
  runLimit?: number;
  /** A scrape gives up on Redis after this long (reported as conveyor_redis_up 0). */
  timeoutMs?: number;
  log?: Logger;
  /** Clock for the oldest job's age (ms); injectable for tests. */
  now?: () => number;
};

export type RunMetrics = {
  /** Closes the BullMQ queue handles (not the Redis connection, which the caller owns). */
  close(): Promise<void>;
};

type QueueSnapshot = {
  queue: string;
  /** Summed over the shards: the queue-wide numbers. */
  counts: Record<string, number>;
  /** Each shard's own counts, in shard order (one entry for an unsharded queue). */
  shardCounts: Record<string, number>[];
  /** The oldest waiting job of any shard. */
  oldestAgeSeconds: number;
  runs: RunStatus[];
  /** Cancelled and timed-out jobs of each listed run still in BullMQ's failed set, by run id. */
  failedKinds: Map<string, FailedCounts>;
};

const PRODUCER_STATES = ['running', 'done', 'lost'] as const;
const CONSUMER_STATES = ['starting', 'idle', 'busy', 'cancelling', 'cancelled', 'stopped', 'lost'] as const;
/** produced = completed + failed + cancelled + removed + unfinished. */
const RUN_JOB_STATES = ['produced', 'completed', 'failed', 'cancelled', 'removed', 'unfinished'] as const;
const SHARD_JOB_STATES = ['produced', 'completed', 'failed', 'cancelled', 'unfinished'] as const;

/**
 * Queue- and run-level metrics read from Redis at scrape time, for the dashboard's `/metrics`.
 * Consumers exit after a join, so a run's final totals live in Redis, not in any process: these are
 * the series to alert and report on; the per-process counters are for rates.
 *
 * One scrape makes one read: every metric's collect() joins the same in-flight snapshot (prom-client
 * starts all collects in the same tick), so the cost is one getJobCounts and one oldest-job lookup per
 * shard of each queue plus one readRunStatus per listed run, whatever the number of metrics.
 *
 * A sharded queue (`SHARDS=k`) is k BullMQ queues: `conveyor_queue_jobs` and the oldest job's age are
 * queue-wide (summed, or the oldest of any shard), so dashboards and alerts need not know about shards;
 * the `*_shard_*` series break them down, one shard (`shard="0"`...) per series, always, so a query
 * written for sharded queues also works on an unsharded one (its single shard 0).
 */
export function registerRunMetrics(registry: Registry, opts: RunMetricsOptions): RunMetrics {
  const runLimit = opts.runLimit ?? 20;
  const timeoutMs = opts.timeoutMs ?? 2_000;
  const now = opts.now ?? Date.now;
  const queues = new Map<string, Queue<JobData>[]>(
    opts.queues.map((q) => {
      const { name, shards } = typeof q === 'string' ? { name: q, shards: 1 } : q;
      // Connection trouble already shows as conveyor_redis_up 0; without a listener BullMQ prints it.
      const onError = (message: string) =>
        opts.log?.debug({ err: message, queue: name }, 'metrics queue handle error');
      return [name, openQueues(name, shards, opts.redis, onError)];
    }),
  );
  const kinds = new Map([...queues].map(([name, shards]) => [name, new FailedKinds(opts.redis, shards)]));

  const read = async (): Promise<QueueSnapshot[]> =>
    Promise.all(
      [...queues].map(async ([name, shards]) => {
        const [shardCounts, oldest, runIds] = await Promise.all([
          Promise.all(shards.map((q) => q.getJobCounts())),
          Promise.all(shards.map((q) => q.getJobs(['waiting'], 0, 0, true))),
          listRuns(opts.redis, name, runLimit),
        ]);
        const [statuses] = await Promise.all([
          Promise.all(runIds.map((id) => readRunStatus(opts.redis, name, id, opts.leaseMs))),
          kinds.get(name)!.update(shardCounts.map((c) => c.failed ?? 0)),
        ]);
        const runs = statuses.filter((s): s is RunStatus => s !== null);
        const counts: Record<string, number> = {};
        for (const c of shardCounts)
          for (const [state, n] of Object.entries(c)) counts[state] = (counts[state] ?? 0) + n;
        const firsts = oldest.flatMap((jobs) => jobs.slice(0, 1).map((j) => j.timestamp));
        return {
          queue: name,
          counts,
          shardCounts,
          oldestAgeSeconds: firsts.length ? Math.max(0, now() - Math.min(...firsts)) / 1000 : 0,
          runs,
          failedKinds: new Map(
            runs.map((r) => [r.runId, kinds.get(name)!.ofRun(r.idPrefix ?? `${r.runId}+`)]),
          ),
        };
      }),
    );

  let pending: Promise<QueueSnapshot[] | null> | undefined;
  const snapshot = (): Promise<QueueSnapshot[] | null> =>
    (pending ??= withTimeout(read(), timeoutMs)
      .catch((err: unknown) => {
        opts.log?.warn(
          { err: err instanceof Error ? err.message : String(err) },
          'metrics: reading queues and runs from Redis failed',
        );
        return null;
      })
      .finally(() => {
        pending = undefined;
      }));

  /** A gauge whose series are rebuilt from the snapshot at every scrape, so vanished runs drop out. */
  const gauge = <L extends string>(
    name: string,
    help: string,
    labelNames: L[],
    fill: (g: Gauge<L>, s: QueueSnapshot[]) => void,
  ) =>
    new Gauge<L>({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const s = await snapshot();
        this.reset();
        if (s) fill(this, s);
      },
    });

  new Gauge({
    name: 'conveyor_redis_up',
    help: 'Whether this scrape could read the queues and runs from Redis (1) or not (0).',
    registers: [registry],
    async collect() {
      this.set((await snapshot()) ? 1 : 0);
    },
  });

  gauge(
    'conveyor_queue_jobs',
    'Jobs in the queue by BullMQ state (summed over its shards).',
    ['queue', 'state'],
    (g, s) => {
      for (const q of s)
        for (const [state, n] of Object.entries(q.counts)) g.set({ queue: q.queue, state }, n);
    },
  );
  gauge(
    'conveyor_queue_shard_jobs',
    "Jobs in each shard's BullMQ queue by state (shard 0 alone when the queue is not sharded).",
    ['queue', 'shard', 'state'],
    (g, s) => {
      for (const q of s)
        q.shardCounts.forEach((counts, shard) => {
          for (const [state, n] of Object.entries(counts))
            g.set({ queue: q.queue, shard: String(shard), state }, n);
        });
    },
  );
  gauge(
    'conveyor_queue_oldest_job_age_seconds',
    'Age of the oldest job waiting to start on any shard (0 when none waits).',
    ['queue'],
    (g, s) => {
      for (const q of s) g.set({ queue: q.queue }, q.oldestAgeSeconds);
    },
  );

  const eachRun = (
    s: QueueSnapshot[],
    f: (labels: { queue: string; run: string }, r: RunStatus, q: QueueSnapshot) => void,
  ) => {
    for (const q of s) for (const r of q.runs) f({ queue: q.queue, run: r.runId }, r, q);
  };
  gauge(
    'conveyor_run_jobs',
    "A run's jobs from Redis: produced (acknowledged) = completed + failed + cancelled + removed + " +
      'unfinished; timed-out: the failed ones whose last attempt ran out of time, while BullMQ keeps them.',
    ['queue', 'run', 'state'],
    (g, s) =>
      eachRun(s, (l, r, q) => {
        for (const state of RUN_JOB_STATES) g.set({ ...l, state }, r.jobs[state]);
        g.set({ ...l, state: 'timed-out' }, q.failedKinds.get(r.runId)?.timedOut ?? 0);
      }),
  );
  gauge(
    'conveyor_run_shard_jobs',
    "A run's jobs on each shard: produced (acknowledged), completed, failed, cancelled, unfinished.",
    ['queue', 'run', 'shard', 'state'],
    (g, s) =>
      eachRun(s, (l, r) => {
        for (const shard of r.shards)
          for (const state of SHARD_JOB_STATES)
            g.set({ ...l, shard: String(shard.index), state }, shard[state]);
      }),
  );
  gauge('conveyor_producers', "A run's producers by state.", ['queue', 'run', 'state'], (g, s) =>
    eachRun(s, (l, r) => {
      for (const state of PRODUCER_STATES)
        g.set({ ...l, state }, r.producers.list.filter((p) => p.state === state).length);
    }),
  );
  gauge(
    'conveyor_run_producers_expected',
    'How many producers the run waits for before it can join.',
    ['queue', 'run'],
    (g, s) => eachRun(s, (l, r) => g.set(l, r.producers.expected)),
  );
  gauge(
    'conveyor_consumers',
    "A run's consumers by state (lost: heartbeat older than the lease).",
    ['queue', 'run', 'state'],
    (g, s) =>
      eachRun(s, (l, r) => {
        for (const state of CONSUMER_STATES)
          g.set({ ...l, state }, r.consumers.filter((c) => c.state === state).length);
      }),
  );
  gauge(
    'conveyor_run_joined',
    'Whether the run has joined (1) or is still pending (0).',
    ['queue', 'run'],
    (g, s) => eachRun(s, (l, r) => g.set(l, r.join.state === 'joined' ? 1 : 0)),
  );
  gauge(
    'conveyor_run_joined_timestamp_seconds',
    'When the run joined (Unix seconds); absent while pending.',
    ['queue', 'run'],
    (g, s) =>
      eachRun(s, (l, r) => {
        if (r.join.joinedAt) g.set(l, Date.parse(r.join.joinedAt) / 1000);
      }),
  );
  // A counter computed from Redis: the number of cancelled consumers never goes down within a run.
  new Counter({
    name: 'conveyor_consumer_cancellations_total',
    help: 'Consumers of the run that were cancelled (by the join or by request).',
    labelNames: ['queue', 'run'],
    registers: [registry],
    async collect() {
      const s = await snapshot();
      this.reset();
      if (s) eachRun(s, (l, r) => this.inc(l, r.consumers.filter((c) => c.state === 'cancelled').length));
    },
  });

  let closing: Promise<void> | undefined;
  return {
    close: () =>
      (closing ??= Promise.all([...queues.values()].flat().map((q) => q.close())).then(() => undefined)),
  };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
