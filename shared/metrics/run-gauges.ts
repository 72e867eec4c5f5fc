import { Counter, Gauge, type Registry } from 'prom-client';
import type { RunStatus } from '../run/status.js';
import type { QueueSnapshot, ReadSnapshot } from './run-snapshot.js';

const PRODUCER_STATES = ['running', 'done', 'lost'] as const;
const CONSUMER_STATES = ['starting', 'idle', 'busy', 'cancelling', 'cancelled', 'stopped', 'lost'] as const;
/** produced = completed + failed + cancelled + removed + unfinished. */
const RUN_JOB_STATES = ['produced', 'completed', 'failed', 'cancelled', 'removed', 'unfinished'] as const;
const SHARD_JOB_STATES = ['produced', 'completed', 'failed', 'cancelled', 'unfinished'] as const;

/** Where the run metrics register, and the snapshot every collect reads. */
type Source = { registry: Registry; snapshot: ReadSnapshot };

/** A gauge whose series are rebuilt from the snapshot at every scrape, so vanished runs drop out. */
function snapshotGauge<L extends string>(
  { registry, snapshot }: Source,
  name: string,
  help: string,
  labelNames: L[],
  fill: (g: Gauge<L>, s: QueueSnapshot[]) => void,
): void {
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
}

function eachRun(
  s: QueueSnapshot[],
  f: (labels: { queue: string; run: string }, r: RunStatus, q: QueueSnapshot) => void,
): void {
  for (const q of s) for (const r of q.runs) f({ queue: q.queue, run: r.runId }, r, q);
}

/**
 * Registers every run metric on `source.registry`. A scrape lists them in this order: whether Redis
 * answered, the queues, then each run's jobs, processes, join and cancelled consumers.
 */
export function registerRunGauges(source: Source): void {
  registerQueueGauges(source);
  registerRunJobGauges(source);
  registerRunProcessGauges(source);
  registerRunJoinGauges(source);
  registerCancellationCounter(source);
}

function registerQueueGauges(source: Source): void {
  new Gauge({
    name: 'conveyor_redis_up',
    help: 'Whether this scrape could read the queues and runs from Redis (1) or not (0).',
    registers: [source.registry],
    async collect() {
      this.set((await source.snapshot()) ? 1 : 0);
    },
  });
  snapshotGauge(
    source,
    'conveyor_queue_jobs',
    'Jobs in the queue by BullMQ state (summed over its shards).',
    ['queue', 'state'],
    (g, s) => {
      for (const q of s)
        for (const [state, n] of Object.entries(q.counts)) g.set({ queue: q.queue, state }, n);
    },
  );
  snapshotGauge(
    source,
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
  snapshotGauge(
    source,
    'conveyor_queue_oldest_job_age_seconds',
    'Age of the oldest job waiting to start on any shard (0 when none waits).',
    ['queue'],
    (g, s) => {
      for (const q of s) g.set({ queue: q.queue }, q.oldestAgeSeconds);
    },
  );
}

function registerRunJobGauges(source: Source): void {
  snapshotGauge(
    source,
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
  snapshotGauge(
    source,
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
}

function registerRunProcessGauges(source: Source): void {
  snapshotGauge(
    source,
    'conveyor_producers',
    "A run's producers by state.",
    ['queue', 'run', 'state'],
    (g, s) =>
      eachRun(s, (l, r) => {
        for (const state of PRODUCER_STATES)
          g.set({ ...l, state }, r.producers.list.filter((p) => p.state === state).length);
      }),
  );
  snapshotGauge(
    source,
    'conveyor_run_producers_expected',
    'How many producers the run waits for before it can join.',
    ['queue', 'run'],
    (g, s) => eachRun(s, (l, r) => g.set(l, r.producers.expected)),
  );
  snapshotGauge(
    source,
    'conveyor_consumers',
    "A run's consumers by state (lost: heartbeat older than the lease).",
    ['queue', 'run', 'state'],
    (g, s) =>
      eachRun(s, (l, r) => {
        for (const state of CONSUMER_STATES)
          g.set({ ...l, state }, r.consumers.filter((c) => c.state === state).length);
      }),
  );
}

function registerRunJoinGauges(source: Source): void {
  snapshotGauge(
    source,
    'conveyor_run_joined',
    'Whether the run has joined (1) or is still pending (0).',
    ['queue', 'run'],
    (g, s) => eachRun(s, (l, r) => g.set(l, r.join.state === 'joined' ? 1 : 0)),
  );
  snapshotGauge(
    source,
    'conveyor_run_joined_timestamp_seconds',
    'When the run joined (Unix seconds); absent while pending.',
    ['queue', 'run'],
    (g, s) =>
      eachRun(s, (l, r) => {
        if (r.join.joinedAt) g.set(l, Date.parse(r.join.joinedAt) / 1000);
      }),
  );
}

function registerCancellationCounter(source: Source): void {
  // A counter computed from Redis: the number of cancelled consumers never goes down within a run.
  new Counter({
    name: 'conveyor_consumer_cancellations_total',
    help: 'Consumers of the run that were cancelled (by the join or by request).',
    labelNames: ['queue', 'run'],
    registers: [source.registry],
    async collect() {
      const s = await source.snapshot();
      this.reset();
      if (s) eachRun(s, (l, r) => this.inc(l, r.consumers.filter((c) => c.state === 'cancelled').length));
    },
  });
}
