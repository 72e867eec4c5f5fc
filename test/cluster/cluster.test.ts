import type { Cluster } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { createProducer } from '../../producers/producer.js';
import { builtinJobs } from '../../shared/jobs/index.js';
import { JobRegistry } from '../../shared/jobs/registry.js';
import { queueShards, shardJobPrefix } from '../../shared/keys.js';
import { createLogger } from '../../shared/logger.js';
import { openQueues } from '../../shared/queue.js';
import { closeRedis, createRedis, type RedisClient } from '../../shared/redis.js';
import { startRedisCluster, type RedisClusterHandle } from '../../shared/redis-server.js';
import { projectRoot } from '../../shared/roles.js';
import { RunStore } from '../../shared/run/run-store.js';
import { readRunStatus, type RunStatus } from '../../shared/run/status.js';
import { exitOf, killLeftovers, spawnRole, spawnTracked, type Spawned } from '../helpers/processes.js';
import { pollUntil, testQueue } from '../helpers/redis.js';

const FAST = {
  HEARTBEAT_MS: '200',
  LEASE_MS: '3000',
  LOCK_MS: '2000',
  STALLED_INTERVAL_MS: '1000',
  KEEP_COMPLETED: '100000',
};

const joinedLines = (procs: Spawned[]) =>
  procs.flatMap((p) => p.output().split('\n')).filter((l) => l.includes('"msg":"run joined"')).length;

/** The master serving a slot, as `host:port`, from the cluster's own slot table. */
async function masterOf(redis: RedisClient, slot: number): Promise<string> {
  const table = await (redis as Cluster).cluster('SLOTS');
  const master = table.find(([low, high]) => slot >= low && slot <= high)?.[2];
  if (!master) throw new Error(`no master serves slot ${slot}`);
  return `${master[0]}:${master[1]}`;
}

describe('on a real Redis Cluster (3 masters)', () => {
  let cluster: RedisClusterHandle;
  let redis: RedisClient;

  beforeAll(async () => {
    const binary = inject('redisServerBinary');
    if (!binary)
      throw new Error(
        'these tests start a Redis Cluster: install redis-server (apt-get install redis-server)',
      );
    cluster = await startRedisCluster({ binary, masters: 3 });
    redis = createRedis(
      { redisUrl: cluster.url, redisTlsCaFile: undefined },
      createLogger({ level: 'silent', service: 'test' }),
      'test',
    );
  }, 60_000);
  afterAll(async () => {
    if (redis) await closeRedis(redis);
    await cluster?.stop();
  });
  afterEach(async () => {
    expect(await killLeftovers()).toEqual([]);
  });

  it('producers and consumers run a job run to one join with exact totals', async () => {
    const queue = testQueue();
    const env = {
      ...FAST,
      REDIS_URL: cluster.url,
      QUEUE: queue,
      RUN_ID: 'c1',
      PRODUCERS: '2',
      JOBS: '5',
      PRODUCE_INTERVAL_MS: '20',
      JOB_MS: '20',
    };
    const procs: Spawned[] = [
      spawnRole('consumer', { ...env, CONSUMER_ID: 'c1' }),
      spawnRole('consumer', { ...env, CONSUMER_ID: 'c2' }),
      spawnRole('producer', { ...env, PRODUCER_ID: 'p1' }),
      spawnRole('producer', { ...env, PRODUCER_ID: 'p2' }),
    ];
    const exits = await Promise.all(procs.map((p) => exitOf(p, 45_000)));
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0, 0]);
    const status = await readRunStatus(redis, queue, 'c1', 3_000);
    expect(status?.join.state).toBe('joined');
    expect(status?.jobs).toMatchObject({
      produced: 10,
      completed: 10,
      failed: 0,
      unfinished: 0,
      duplicateFinishes: 0,
    });
    expect(status?.consumers.map((c) => c.state)).toEqual(['cancelled', 'cancelled']);
    const joinedLines = procs
      .flatMap((p) => p.output().split('\n'))
      .filter((l) => l.includes('"msg":"run joined"'));
    expect(joinedLines).toHaveLength(1);
  });
  describe('SHARDS=3: one queue spread over the three masters', () => {
    const shards = 3;

    it('places each shard on a different master', async () => {
      const masters = await Promise.all(
        queueShards('conveyor', shards).map((sh) => masterOf(redis, sh.slot)),
      );
      expect(new Set(masters).size).toBe(shards);
    });

    it('the core end-to-end run passes unchanged: staggered producers, one join, exact totals', async () => {
      const queue = testQueue();
      const env = {
        ...FAST,
        REDIS_URL: cluster.url,
        QUEUE: queue,
        SHARDS: String(shards),
        RUN_ID: 's1',
        PRODUCERS: '3',
        JOBS: '4',
        PRODUCE_INTERVAL_MS: '30',
        JOB_MS: '40',
      };
      const status = async (): Promise<RunStatus> => {
        const s = await readRunStatus(redis, queue, 's1', 3_000);
        if (!s) throw new Error('run not found');
        return s;
      };
      const consumers = ['c1', 'c2'].map((id) =>
        spawnRole('consumer', { ...env, CONSUMER_ID: id }, { label: id }),
      );
      const producers: Spawned[] = [];
      for (const id of ['p1', 'p2', 'p3']) {
        const p = spawnRole('producer', { ...env, PRODUCER_ID: id }, { label: id });
        producers.push(p);
        expect((await exitOf(p, 45_000)).code).toBe(0);
        if (id !== 'p3') {
          // Every shard may be empty, but a producer that has not started holds the join back.
          await pollUntil('jobs so far to finish', async () =>
            (await status()).jobs.unfinished === 0 ? true : undefined,
          );
          expect((await status()).join).toMatchObject({ state: 'pending', waitingFor: 'producers-missing' });
          expect((await status()).shards.every((sh) => !sh.closed)).toBe(true);
        }
      }
      const exits = await Promise.all(consumers.map((c) => exitOf(c, 45_000)));
      expect(exits.map((e) => e.code)).toEqual([0, 0]);

      const s = await status();
      expect(s.join.state).toBe('joined');
      expect(s.jobs).toMatchObject({
        produced: 12,
        completed: 12,
        failed: 0,
        unfinished: 0,
        duplicateFinishes: 0,
      });
      expect(s.join.totals).toMatchObject({ produced: 12, completed: 12, failed: 0 });
      expect(s.producers).toMatchObject({ expected: 3, done: 3, lost: 0 });
      expect(s.consumers.map((c) => c.state)).toEqual(['cancelled', 'cancelled']);
      // Round-robin: 4 jobs a producer over 3 shards puts work on every shard, and each closed.
      expect(s.shards).toHaveLength(shards);
      for (const sh of s.shards) expect(sh).toMatchObject({ closed: true, unfinished: 0 });
      expect(s.shards.every((sh) => sh.produced > 0)).toBe(true);
      const completed = (
        await Promise.all(
          queueShards(queue, shards).map((sh) => redis.zrange(`${shardJobPrefix(sh)}completed`, '0', '-1')),
        )
      ).flat();
      const expected = ['p1', 'p2', 'p3'].flatMap((p) => Array.from({ length: 4 }, (_, i) => `s1.${p}.${i}`));
      expect(completed.sort()).toEqual(expected.sort());
      expect(joinedLines([...consumers, ...producers])).toBe(1);
    });

    it('keeps jobs with the same shard key on one shard in put order, and an idempotency key once', async () => {
      const queue = testQueue();
      const run = new RunStore(redis, queue, 'k1', shards);
      await run.create(1);
      await run.registerProducer('p1', { host: 'test', pid: process.pid }, 10_000);
      const queues = openQueues(queue, shards, redis);
      try {
        const producer = createProducer({
          queues,
          run,
          registry: new JobRegistry(builtinJobs),
          producerId: 'p1',
          jobOptions: {},
        });
        const put: Record<string, string[]> = { 'acct-1': [], 'acct-2': [] };
        for (let i = 0; i < 12; i++) {
          const key = i % 2 === 0 ? 'acct-1' : 'acct-2';
          put[key]!.push(await producer.put('sleep', { value: i, ms: 0 }, { shardKey: key }));
        }
        for (let i = 0; i < 3; i++) await producer.put('sleep', { value: 99, ms: 0 }, { key: 'order-7' });
        await producer.flush();
        // getWaiting lists a queue in the order its workers will take the jobs.
        const waiting = await Promise.all(
          queues.map(async (q) => (await q.getWaiting(0, -1)).map((j) => j.id!)),
        );
        for (const ids of Object.values(put)) {
          const holder = waiting.filter((w) => w.some((id) => ids.includes(id)));
          expect(holder).toHaveLength(1);
          expect(holder[0]!.filter((id) => ids.includes(id))).toEqual(ids);
        }
        expect(waiting.flat().filter((id) => id === 'k1.k.order-7')).toHaveLength(1);
        const done = await producer.done();
        expect(done.join.reason).toBe('jobs-unfinished');
        expect(done.join.detail).toBe(13);
      } finally {
        await Promise.all(queues.map((q) => q.close()));
      }
    });

    it('refuses a process whose SHARDS differs from the run’s, saying what to set', async () => {
      const queue = testQueue();
      await new RunStore(redis, queue, 'm1', shards).create(1);
      const env = { ...FAST, REDIS_URL: cluster.url, QUEUE: queue, RUN_ID: 'm1', SHARDS: '1' };
      const consumer = spawnRole('consumer', { ...env, CONSUMER_ID: 'c1' });
      const producer = spawnRole('producer', { ...env, PRODUCER_ID: 'p1', PRODUCERS: '1', JOBS: '1' });
      const exits = await Promise.all([exitOf(consumer), exitOf(producer)]);
      expect(exits.map((e) => e.code)).toEqual([1, 1]);
      for (const p of [consumer, producer])
        expect(p.output()).toContain('created with 3 shards; set SHARDS=3');
    });
  });
});

describe('the demo on a local Redis Cluster (the README scale-out command)', () => {
  afterEach(async () => {
    expect(await killLeftovers()).toEqual([]);
  });

  it('DEMO_CLUSTER=3 starts 3 masters with replicas, spreads the queue over 3 shards, joins, exits 0', async () => {
    const demo = spawnTracked(
      'demo',
      process.execPath,
      ['--import', 'tsx', `${projectRoot}/scripts/demo/main.ts`],
      {
        ...FAST,
        DEMO_CLUSTER: '3',
        DEMO_DASHBOARD: 'false',
        PRODUCERS: '2',
        CONSUMERS: '2',
        JOBS: '6',
        PRODUCE_INTERVAL_MS: '20',
        JOB_MS: '20',
      },
    );
    expect((await exitOf(demo, 90_000)).code).toBe(0);
    const out = demo.stdout();
    expect(out).toContain('Started a local Redis Cluster: 3 masters, each with a replica');
    expect(out).toContain('the queue is spread over 3 shards');
    expect(out).toMatch(/run demo-\d+ joined at /);
    expect(out).toContain('jobs: produced 12, completed 12, failed 0');
    expect(out).toContain('All 4 processes exited 0.');
  });
});
