import { collectDefaultMetrics, Counter, Histogram, type Registry } from 'prom-client';

/**
 * Histogram buckets in seconds, from 1 ms to 1 h: fine enough below a second for tiny jobs and
 * queue hops, coarse steps up to an hour for slow jobs and a backlog's wait.
 */
export const SECONDS_BUCKETS = [
  0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
];

export type Service = 'producer' | 'consumer' | 'dashboard';

/**
 * Node's process metrics (CPU, memory, event loop lag, GC...) on `registry`, with every metric of
 * the registry labelled `service`. Call once per registry.
 */
export function registerDefaultMetrics(registry: Registry, service: Service): void {
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry });
}

/** What a producer reports; matches the producer's observer hook. */
export type ProducerMetrics = { jobsProduced(count: number): void };

/** `conveyor_jobs_produced_total{queue}`: jobs this process enqueued and Redis acknowledged. */
export function createProducerMetrics(registry: Registry, queue: string): ProducerMetrics {
  const produced = new Counter({
    name: 'conveyor_jobs_produced_total',
    help: 'Jobs this producer enqueued (acknowledged by Redis).',
    labelNames: ['queue'],
    registers: [registry],
  });
  produced.inc({ queue }, 0);
  return {
    jobsProduced: (count) => {
      if (count > 0) produced.inc({ queue }, count);
    },
  };
}

/** What a consumer reports; structurally the consumer's `ConsumerObserver`. */
export type ConsumerMetrics = {
  jobStarted(job: { waitMs: number }): void;
  jobFinished(job: {
    outcome: 'completed' | 'failed' | 'cancelled';
    durationMs: number;
    timedOut?: boolean;
  }): void;
  jobRetried(): void;
};

/**
 * A consumer's counters and histograms, fed by its observer hook:
 * `conveyor_jobs_{completed,failed,timed_out,cancelled,retried}_total{queue}` (a job whose last attempt
 * ran out of time counts as timed out, not failed), `conveyor_job_wait_seconds{queue}` (one
 * observation per attempt started; a retry's wait counts from the original enqueue) and
 * `conveyor_job_duration_seconds{queue}` (one observation per finished job, completed or failed).
 */
export function createConsumerMetrics(registry: Registry, queue: string): ConsumerMetrics {
  const counter = (name: string, help: string) => {
    const c = new Counter({ name, help, labelNames: ['queue'], registers: [registry] });
    c.inc({ queue }, 0);
    return c;
  };
  const completed = counter('conveyor_jobs_completed_total', 'Jobs this consumer completed.');
  const failed = counter(
    'conveyor_jobs_failed_total',
    'Jobs that failed for good on this consumer (after their last attempt), timeouts apart.',
  );
  const timedOut = counter(
    'conveyor_jobs_timed_out_total',
    'Jobs that failed for good on this consumer because their last attempt ran out of time.',
  );
  const cancelled = counter(
    'conveyor_jobs_cancelled_total',
    'Jobs this consumer recorded cancelled (never started, or aborted while running).',
  );
  const retried = counter(
    'conveyor_jobs_retried_total',
    'Attempts that failed on this consumer and will be retried.',
  );
  const histogram = (name: string, help: string) => {
    const h = new Histogram({
      name,
      help,
      labelNames: ['queue'],
      buckets: SECONDS_BUCKETS,
      registers: [registry],
    });
    h.zero({ queue });
    return h;
  };
  const wait = histogram(
    'conveyor_job_wait_seconds',
    'Time from enqueue to the start of an attempt, per attempt started.',
  );
  const duration = histogram(
    'conveyor_job_duration_seconds',
    'Run time of a finished job (its last attempt), completed or failed.',
  );
  return {
    jobStarted: (job) => wait.observe({ queue }, job.waitMs / 1000),
    jobFinished: (job) => {
      const c =
        job.outcome === 'completed'
          ? completed
          : job.outcome === 'cancelled'
            ? cancelled
            : job.timedOut
              ? timedOut
              : failed;
      c.inc({ queue });
      duration.observe({ queue }, job.durationMs / 1000);
    },
    jobRetried: () => retried.inc({ queue }),
  };
}
