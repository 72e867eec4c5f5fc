import { spawnSync } from 'node:child_process';
import { beforeAll, describe, expect, it } from 'vitest';
import { projectRoot, roleCommand } from '../../shared/roles.js';
import { readRunStatus } from '../../shared/run/status.js';
import { exitOf, metricsPortOf, spawnRole } from '../helpers/processes.js';
import { scrape, value } from '../helpers/prometheus-text.js';
import { redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

/** What the image runs: `npm run build`, then plain node on dist/ (no tsx). */
describe('compiled producer and consumer', () => {
  const ctx = useTestQueue();

  beforeAll(() => {
    const build = spawnSync('npm', ['run', 'build'], {
      cwd: projectRoot,
      encoding: 'utf8',
      timeout: 150_000,
    });
    if (build.status !== 0) throw new Error(`npm run build failed:\n${build.stdout}${build.stderr}`);
  }, 160_000);

  it('run a job run end to end from dist/, and the consumer serves its final metrics until told to stop', async () => {
    for (const role of ['producer', 'consumer'] as const) {
      const { args } = roleCommand(role, true);
      expect(args).toEqual([expect.stringMatching(new RegExp(`/dist/${role}s/main\\.js$`))]);
    }
    const env = {
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'built',
      HEARTBEAT_MS: '200',
      LEASE_MS: '3000',
    };
    const consumer = spawnRole(
      'consumer',
      { ...env, CONCURRENCY: '2', METRICS_LINGER_MS: '120000' },
      { compiled: true, label: 'consumer (dist)' },
    );
    const producer = spawnRole(
      'producer',
      { ...env, PRODUCERS: '1', JOBS: '6', PRODUCE_INTERVAL_MS: '0', BATCH_SIZE: '3', JOB_MS: '5' },
      { compiled: true, label: 'producer (dist)' },
    );
    expect((await exitOf(producer)).code).toBe(0);
    // Joined and cancelled, the consumer keeps /metrics up for its linger period.
    await consumer.waitFor('serving final metrics before exiting');
    const status = await readRunStatus(ctx.redis, ctx.queue, 'built', 3_000);
    expect(status?.join.state).toBe('joined');
    expect(status?.jobs).toMatchObject({ produced: 6, completed: 6, failed: 0, unfinished: 0 });
    const metrics = await scrape(`http://127.0.0.1:${await metricsPortOf(consumer)}/metrics`);
    expect(value(metrics, 'conveyor_jobs_completed_total', { queue: ctx.queue, service: 'consumer' })).toBe(
      6,
    );

    consumer.child.kill('SIGTERM');
    expect((await exitOf(consumer)).code).toBe(0);
  });
});
