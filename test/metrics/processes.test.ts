import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { startMetricsServer } from '../../shared/metrics/metrics-server.js';
import { registerDefaultMetrics } from '../../shared/metrics/process-metrics.js';
import { registerRunMetrics } from '../../shared/metrics/run-metrics.js';
import { projectRoot } from '../../shared/roles.js';
import { readRunStatus, type RunStatus } from '../../shared/run/status.js';
import { startPrometheus, type PrometheusHandle } from '../helpers/prometheus-server.js';
import { histogram, scrape, typeOf, value, type PromMetrics } from '../helpers/prometheus-text.js';
import { exitOf, metricsPortOf, spawnRole, type Spawned } from '../helpers/processes.js';
import { pollUntil, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

const FAST = { HEARTBEAT_MS: '200', LEASE_MS: '3000' };
/** Long enough never to end by itself in a test: the test ends it with SIGTERM once it has scraped. */
const LINGER = { METRICS_LINGER_MS: '120000' };

describe('metrics of real producer and consumer processes', () => {
  const ctx = useTestQueue();

  const status = async (run: string): Promise<RunStatus> => {
    const s = await readRunStatus(ctx.redis, ctx.queue, run, 3_000);
    if (!s) throw new Error(`run ${run} not found`);
    return s;
  };
  /** Every job of the producers so far finished, while a producer yet to start holds the join back. */
  const settled = (run: string, produced: number, done: number, procs: Spawned[]) =>
    Promise.race([settledPoll(run, produced, done), exitedEarly(procs)]);
  const settledPoll = (run: string, produced: number, done: number) =>
    pollUntil(`run ${run}: ${produced} jobs produced and finished, ${done} producers done`, async () => {
      const s = await status(run);
      const ok =
        s.jobs.produced === produced &&
        s.jobs.completed + s.jobs.failed === produced &&
        s.producers.done === done;
      return ok && s.join.state === 'pending' ? s : undefined;
    });
  /** Rejects, with its output, as soon as any of these processes exits: none should before the test ends it. */
  const exitedEarly = (procs: Spawned[]) =>
    Promise.race(
      procs.map((p) =>
        p.exit.then((e) => {
          throw new Error(`${p.label} exited early (${JSON.stringify(e)}):\n${p.output()}`);
        }),
      ),
    );
  const metricsUrl = (port: number) => `http://127.0.0.1:${port}/metrics`;
  const sum = (all: PromMetrics[], f: (m: PromMetrics) => number) => all.reduce((n, m) => n + f(m), 0);

  /** Ends a lingering producer (it has served its final metrics) and checks it exits cleanly. */
  const endLinger = async (p: Spawned) => {
    p.child.kill('SIGTERM');
    expect((await exitOf(p)).code).toBe(0);
  };

  it('every /metrics counts the run: counters equal the run’s totals and the histograms saw every job', async () => {
    const run = 'm1';
    // Three producers expected: the third starts only after the scrape, so the join (and with it the
    // consumers' exit) waits until every process has been read.
    const env = {
      ...FAST,
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: run,
      PRODUCERS: '3',
      JOB_MODULES: './test/fixtures/jobs.ts',
    };
    const consumers = [
      spawnRole('consumer', { ...env, CONSUMER_ID: 'c1', CONCURRENCY: '2' }, { label: 'c1' }),
      spawnRole('consumer', { ...env, CONSUMER_ID: 'c2', CONCURRENCY: '2' }, { label: 'c2' }),
    ];
    const producerA = spawnRole(
      'producer',
      {
        ...env,
        ...LINGER,
        PRODUCER_ID: 'pa',
        JOBS: '12',
        BATCH_SIZE: '4',
        PRODUCE_INTERVAL_MS: '0',
        JOB_MS: '5',
      },
      { label: 'pa' },
    );
    const producerB = spawnRole(
      'producer',
      {
        ...env,
        ...LINGER,
        PRODUCER_ID: 'pb',
        JOBS: '2',
        PRODUCE_INTERVAL_MS: '0',
        JOB_TYPE: 'always-fail',
        ATTEMPTS: '2',
        BACKOFF_MS: '0',
      },
      { label: 'pb' },
    );
    const s = await settled(run, 14, 2, [...consumers, producerA, producerB]);
    expect(s.jobs).toMatchObject({ completed: 12, failed: 2 });

    const ports = await Promise.all([producerA, producerB, ...consumers].map(metricsPortOf));
    const [a, b, ...cs] = await Promise.all(ports.map((port) => scrape(metricsUrl(port))));
    // The probes: consumers waiting for the join are ready; producers past done no longer are.
    const probe = async (port: number, path: string) =>
      (await fetch(`http://127.0.0.1:${port}${path}`)).status;
    expect(await Promise.all(ports.map((port) => probe(port, '/healthz')))).toEqual([200, 200, 200, 200]);
    expect(await Promise.all(ports.map((port) => probe(port, '/readyz')))).toEqual([503, 503, 200, 200]);
    expect(value(a!, 'conveyor_jobs_produced_total', { queue: ctx.queue, service: 'producer' })).toBe(12);
    expect(value(b!, 'conveyor_jobs_produced_total', { queue: ctx.queue })).toBe(2);
    for (const c of cs) {
      expect(typeOf(c, 'conveyor_jobs_completed_total')).toBe('counter');
      expect(value(c, 'process_resident_memory_bytes', { service: 'consumer' })).toBeGreaterThan(0);
    }
    expect(
      sum(cs, (c) => value(c, 'conveyor_jobs_completed_total', { queue: ctx.queue, service: 'consumer' })),
    ).toBe(s.jobs.completed);
    expect(sum(cs, (c) => value(c, 'conveyor_jobs_failed_total', { queue: ctx.queue }))).toBe(s.jobs.failed);
    // Each always-fail job failed once, was retried, then failed for good.
    expect(sum(cs, (c) => value(c, 'conveyor_jobs_retried_total', { queue: ctx.queue }))).toBe(2);
    // One duration per finished job; one wait per attempt started (12 + 2 jobs × 2 attempts).
    expect(sum(cs, (c) => histogram(c, 'conveyor_job_duration_seconds', { queue: ctx.queue }).count)).toBe(
      14,
    );
    expect(sum(cs, (c) => histogram(c, 'conveyor_job_wait_seconds', { queue: ctx.queue }).count)).toBe(16);
    // The 5 ms sleep jobs land in the sub-second buckets.
    expect(
      sum(cs, (c) => histogram(c, 'conveyor_job_duration_seconds', { queue: ctx.queue }).buckets['1'] ?? 0),
    ).toBe(14);

    await Promise.all([endLinger(producerA), endLinger(producerB)]);
    const producerC = spawnRole('producer', { ...env, PRODUCER_ID: 'pc', JOBS: '0' }, { label: 'pc' });
    expect((await exitOf(producerC)).code).toBe(0);
    expect((await Promise.all(consumers.map((c) => exitOf(c)))).map((e) => e.code)).toEqual([0, 0]);
    expect((await status(run)).join.state).toBe('joined');
  });

  it('a real Prometheus scraping the processes and the Redis-backed endpoint sees the run’s totals', async () => {
    const run = 'm2';
    // The dashboard's /metrics, served here from the same modules the dashboard mounts.
    const registry = new Registry();
    registerDefaultMetrics(registry, 'dashboard');
    const runMetrics = registerRunMetrics(registry, {
      redis: ctx.redis,
      queues: [ctx.queue],
      leaseMs: 3_000,
    });
    const server = await startMetricsServer({ registry, port: 0, host: '127.0.0.1' });
    ctx.cleanups.push(
      () => runMetrics.close(),
      () => server.close(),
    );

    const env = { ...FAST, REDIS_URL: redisUrl(), QUEUE: ctx.queue, RUN_ID: run, PRODUCERS: '2' };
    const consumers = [1, 2].map((i) =>
      spawnRole('consumer', { ...env, CONSUMER_ID: `c${i}`, CONCURRENCY: '2' }, { label: `c${i}` }),
    );
    const producerA = spawnRole(
      'producer',
      {
        ...env,
        ...LINGER,
        PRODUCER_ID: 'pa',
        JOBS: '10',
        BATCH_SIZE: '5',
        PRODUCE_INTERVAL_MS: '0',
        JOB_MS: '5',
      },
      { label: 'pa' },
    );
    // Scrape targets are the ports the processes bound; Prometheus starts while they work.
    const ports = await Promise.all([producerA, ...consumers].map(metricsPortOf));
    let prometheus: PrometheusHandle | undefined;
    ctx.cleanups.push(async () => prometheus?.stop());
    const prometheusStarting = startPrometheus([...ports, server.port].map((p) => `127.0.0.1:${p}`)).then(
      (p) => (prometheus = p),
    );
    await settled(run, 10, 1, [...consumers, producerA]);
    const prom = await prometheusStarting;

    const scalar = async (promql: string) => {
      const r = await prom.query(promql);
      return r.length === 1 ? Number(r[0]!.value[1]) : undefined;
    };
    const q = `queue="${ctx.queue}"`;
    // Prometheus's latest samples equal `want`, polled since scrapes land on their own schedule.
    const seesAll = (what: string, want: Record<string, number>) =>
      pollUntil(
        what,
        async () => {
          const got = Object.fromEntries(
            await Promise.all(Object.keys(want).map(async (k) => [k, await scalar(k)] as const)),
          );
          return Object.entries(want).every(([k, v]) => got[k] === v) ? got : undefined;
        },
        30_000,
        250,
      );
    const want = {
      [`sum(conveyor_jobs_produced_total{${q}})`]: 10,
      [`sum(conveyor_jobs_completed_total{${q}})`]: 10,
      [`sum(conveyor_job_duration_seconds_count{${q}})`]: 10,
      [`conveyor_run_jobs{${q},run="${run}",state="completed"}`]: 10,
      [`conveyor_producers{${q},run="${run}",state="done"}`]: 1,
      [`conveyor_run_joined{${q},run="${run}"}`]: 0,
      'count(up == 1)': 4,
    };
    expect(await seesAll('Prometheus to scrape the final counts', want)).toEqual(want);

    // Every query of the Grafana dashboard runs against this Prometheus, and the per-run ones find data.
    const dashboard = JSON.parse(
      readFileSync(resolve(projectRoot, 'deploy/grafana/dashboards/conveyor.json'), 'utf8'),
    ) as {
      panels: { title: string; targets: { expr: string }[] }[];
    };
    for (const panel of dashboard.panels) {
      for (const { expr } of panel.targets) {
        const promql = expr.replaceAll('$queue', ctx.queue).replaceAll('$run', run);
        const result = await prom.query(promql);
        if (/conveyor_(run|producers|consumers)/.test(expr) && !expr.includes('timestamp')) {
          expect(result.length, `${panel.title}: ${promql}`).toBeGreaterThan(0);
        }
      }
    }

    // Release the join: the consumers exit, and the join is still visible through the Redis-backed endpoint.
    await endLinger(producerA);
    const producerB = spawnRole('producer', { ...env, PRODUCER_ID: 'pb', JOBS: '0' }, { label: 'pb' });
    expect((await exitOf(producerB)).code).toBe(0);
    expect((await Promise.all(consumers.map((c) => exitOf(c)))).map((e) => e.code)).toEqual([0, 0]);
    // A scrape can see the join before the consumers record their cancellation: wait for both.
    const final = {
      [`conveyor_run_joined{${q},run="${run}"}`]: 1,
      [`conveyor_run_jobs{${q},run="${run}",state="completed"}`]: 10,
      [`conveyor_consumer_cancellations_total{${q},run="${run}"}`]: 2,
    };
    expect(await seesAll('Prometheus to see the join and both cancellations', final)).toEqual(final);
  });
});
