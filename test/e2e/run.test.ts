import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bullKeyPrefix, putJobId } from '../../shared/keys.js';
import { openQueue } from '../../shared/queue.js';
import { freePort, startRedisServer, type RedisServerHandle } from '../../shared/redis-server.js';
import { projectRoot } from '../../shared/roles.js';
import { readRunStatus, type RunStatus } from '../../shared/run/status.js';
import { exitOf, killLeftovers, spawnRole, spawnTracked } from '../helpers/processes.js';
import { runCoreScenario } from '../helpers/core-run.js';
import { FAST, runDemo } from '../helpers/demo.js';
import { connect, pollUntil, redisServerBinary, redisUrl, testQueue } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

describe('end to end: real producer and consumer processes', () => {
  const ctx = useTestQueue();
  let base: Record<string, string>;

  beforeEach(() => {
    base = { ...FAST, REDIS_URL: redisUrl(), QUEUE: ctx.queue, RUN_ID: 'run1' };
  });

  const status = async (): Promise<RunStatus> => {
    const s = await readRunStatus(ctx.redis, ctx.queue, 'run1', 3_000);
    if (!s) throw new Error('run not found');
    return s;
  };
  const completedIds = async () =>
    (await ctx.redis.zrange(`${bullKeyPrefix(ctx.queue)}completed`, '0', '-1')).sort();
  const idsOf = (s: RunStatus, producers: string[], n: number) =>
    producers.flatMap((p) => Array.from({ length: n }, (_, i) => putJobId(s.idPrefix!, p, i))).sort();

  it('3 producers started at staggered times + 2 consumers: joined exactly once, totals exact, all exit 0', async () => {
    await runCoreScenario({ redis: ctx.redis, env: base });
  });

  it('a consumer SIGKILLed mid-job: another recovers its job and the run joins with exact totals', async () => {
    const env = {
      ...base,
      PRODUCERS: '1',
      JOBS: '6',
      BATCH_SIZE: '6',
      PRODUCE_INTERVAL_MS: '0',
      JOB_MS: '1500',
      CONCURRENCY: '2',
    };
    const victim = spawnRole('consumer', { ...env, CONSUMER_ID: 'victim' }, { label: 'victim' });
    await victim.waitFor('consumer ready');
    const producer = spawnRole('producer', { ...env, PRODUCER_ID: 'p1' }, { label: 'p1' });
    await pollUntil('the victim to hold jobs', async () => {
      const c = (await status()).consumers.find((x) => x.id === 'victim');
      return c && c.current.length > 0 ? true : undefined;
    });
    victim.child.kill('SIGKILL');
    expect((await exitOf(victim)).signal).toBe('SIGKILL');
    const rescuer = spawnRole('consumer', { ...env, CONSUMER_ID: 'rescuer' }, { label: 'rescuer' });
    expect((await exitOf(producer)).code).toBe(0);
    expect((await exitOf(rescuer, 45_000)).code).toBe(0);

    const s = await status();
    expect(s.join.state).toBe('joined');
    expect(s.jobs).toMatchObject({
      produced: 6,
      completed: 6,
      failed: 0,
      unfinished: 0,
      duplicateFinishes: 0,
    });
    expect(await completedIds()).toEqual(idsOf(await status(), ['p1'], 6));
    expect(s.consumers.find((c) => c.id === 'victim')?.state).toBe('lost');
    expect(s.consumers.find((c) => c.id === 'rescuer')?.state).toBe('cancelled');
  });

  it('a job that always throws is retried per policy, lands in the failed set, and the run still joins', async () => {
    const env = {
      ...base,
      PRODUCERS: '1',
      JOBS: '2',
      PRODUCE_INTERVAL_MS: '0',
      BATCH_SIZE: '2',
      JOB_MODULES: './test/fixtures/jobs.ts',
      JOB_TYPE: 'always-fail',
      JOB_PAYLOAD: '{}',
      ATTEMPTS: '3',
      BACKOFF_MS: '50',
    };
    const consumer = spawnRole('consumer', env);
    const producer = spawnRole('producer', env);
    expect((await exitOf(producer)).code).toBe(0);
    expect((await exitOf(consumer)).code).toBe(0);
    const s = await status();
    expect(s.join.state).toBe('joined');
    expect(s.jobs).toMatchObject({ produced: 2, completed: 0, failed: 2, unfinished: 0 });
    const failed = await ctx.redis.zrange(`${bullKeyPrefix(ctx.queue)}failed`, '0', '-1');
    expect(failed.sort()).toEqual(idsOf(s, [s.producers.list[0]!.id], 2));
    const q = openQueue(ctx.queue, ctx.redis);
    try {
      for (const id of failed) {
        const job = await q.getJob(id);
        expect(job?.attemptsMade).toBe(3);
        expect(job?.failedReason).toBe('this job always fails');
      }
    } finally {
      await q.close();
    }
  });

  it('SIGTERM to a busy consumer: it finishes the job it holds and exits 0, nothing stalls', async () => {
    const env = { ...base, PRODUCERS: '1', JOBS: '1', PRODUCE_INTERVAL_MS: '0', JOB_MS: '1200' };
    const consumer = spawnRole('consumer', { ...env, CONSUMER_ID: 'c1' });
    const producer = spawnRole('producer', env);
    await pollUntil('the consumer to be busy', async () =>
      (await status()).consumers.some((c) => c.current.length > 0) ? true : undefined,
    );
    consumer.child.kill('SIGTERM');
    expect((await exitOf(consumer)).code).toBe(0);
    expect((await exitOf(producer)).code).toBe(0);
    const s = await status();
    expect(s.jobs).toMatchObject({ produced: 1, completed: 1, unfinished: 0 });
    expect(s.consumers[0]?.state).toBe('stopped');
    expect(s.join.state).toBe('joined');
  });

  it('a consumer started after the join exits at once with a clear message', async () => {
    const env = { ...base, PRODUCERS: '1', JOBS: '0' };
    expect((await exitOf(spawnRole('producer', env))).code).toBe(0);
    expect((await status()).join.state).toBe('joined');
    const late = spawnRole('consumer', env);
    expect((await exitOf(late)).code).toBe(0);
    expect(late.output()).toContain('has already joined: nothing to consume');
  });

  it.each([
    ['producer', { JOBS: 'lots' }, 'JOBS: must be a count like 20 or a range like 0-5 (got "lots")'],
    ['producer', { JOB_TYPE: 'nope' }, 'JOB_TYPE: unknown job type "nope"'],
    ['consumer', { CONCURRENCY: '0' }, 'CONCURRENCY: must be at least 1 (got "0")'],
    ['consumer', { REDIS_URL: 'localhost:6379' }, 'REDIS_URL: must be a URL like redis://host:6379'],
    ['producer', { PRODUCERS: '0' }, 'PRODUCERS: must be at least 1 (got "0")'],
    [
      'producer',
      { JOB_MODULES: './test/fixtures/jobs.ts', JOB_TYPE: 'always-fail', JOB_PAYLOAD: '{"extra":1}' },
      'JOB_PAYLOAD: not a valid "always-fail" payload',
    ],
    ['producer', { JOB_MODULES: './no-such-module.js' }, 'JOB_MODULES: cannot load "./no-such-module.js"'],
    ['consumer', { JOB_MODULES: './no-such-module.js' }, 'JOB_MODULES: cannot load "./no-such-module.js"'],
    ['consumer', { HEARTBEAT_MS: '1100', LEASE_MS: '2000' }, 'HEARTBEAT_MS=1100 with LEASE_MS=2000'],
  ] as const)(
    'bad env: %s with %j exits 2 naming the variable, before writing to Redis',
    async (role, bad, message) => {
      const p = spawnRole(role, { ...base, ...bad });
      expect((await exitOf(p)).code).toBe(2);
      expect(p.output()).toContain(message);
      expect(await ctx.redis.keys(`*${ctx.queue}*`)).toEqual([]);
    },
  );

  it('gather 5: prints the results in order, starting its own consumer when none runs', async () => {
    const p = spawnTracked(
      'gather',
      process.execPath,
      ['--import', 'tsx', `${projectRoot}/scripts/gather/main.ts`, '5'],
      {
        ...base,
        JOB_MS: '100',
        LOG_LEVEL: 'warn',
      },
    );
    expect((await exitOf(p)).code).toBe(0);
    expect(p.stdout()).toBe('[ 0, 1, 2, 3, 4 ]\n');
  });
});

describe("end to end: a Redis of the test's own", () => {
  let server: RedisServerHandle | undefined;
  afterEach(async () => {
    const leaked = await killLeftovers();
    await server?.stop();
    server = undefined;
    expect(leaked).toEqual([]);
  });

  it('processes started while Redis is down say they are waiting, then run the job run once it is up', async () => {
    const binary = redisServerBinary();
    const port = await freePort();
    const env = {
      ...FAST,
      REDIS_URL: `redis://127.0.0.1:${port}`,
      QUEUE: testQueue(),
      RUN_ID: 'r',
      PRODUCERS: '1',
      JOBS: '3',
      PRODUCE_INTERVAL_MS: '0',
      BATCH_SIZE: '3',
      JOB_MS: '10',
    };
    const consumer = spawnRole('consumer', env);
    const producer = spawnRole('producer', env);
    await consumer.waitFor('waiting for Redis');
    await producer.waitFor('waiting for Redis');
    server = await startRedisServer({ binary, port });
    expect((await exitOf(producer)).code).toBe(0);
    expect((await exitOf(consumer)).code).toBe(0);
    const redis = connect(server.url);
    try {
      expect((await readRunStatus(redis, env.QUEUE, 'r', 3_000))?.jobs).toMatchObject({
        produced: 3,
        completed: 3,
      });
    } finally {
      redis.disconnect();
    }
  });

  it('a Redis that may evict keys is refused at start by producers and consumers, saying how to fix it', async () => {
    const binary = redisServerBinary();
    server = await startRedisServer({ binary, args: ['--maxmemory-policy', 'allkeys-lru'] });
    const env = {
      REDIS_URL: server.url,
      QUEUE: testQueue(),
      RUN_ID: 'r',
      JOBS: '1',
      PRODUCE_INTERVAL_MS: '0',
    };
    for (const role of ['producer', 'consumer'] as const) {
      const p = spawnRole(role, env);
      expect((await exitOf(p)).code).toBe(1);
      expect(p.output()).toContain('Redis uses maxmemory-policy \\"allkeys-lru\\"');
      expect(p.output()).toContain('maxmemory-policy noeviction');
    }
  });
});

describe('npm start (the demo)', () => {
  afterEach(async () => {
    expect(await killLeftovers()).toEqual([]);
  });

  it('starts its own Redis, runs producers and consumers to a join, and exits 0', async () => {
    const out = await runDemo({
      PRODUCERS: '2',
      CONSUMERS: '2',
      JOBS: '3',
      PRODUCE_INTERVAL_MS: '50',
      JOB_MS: '50',
    });
    expect(out).toContain('Started a private Redis at redis://127.0.0.1:');
    expect(out).toMatch(/run demo-\d+ joined at /);
    expect(out).toContain('jobs: produced 6, completed 6, failed 0');
    expect(out).toContain('All 4 processes exited 0.');
  });
});
