import { Redis, type Cluster } from 'ioredis';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { keyedJobId, queueShards } from '../../shared/keys.js';
import { createLogger } from '../../shared/logger.js';
import {
  closeRedis,
  createRedis,
  duplicateClient,
  readyWithin,
  type RedisClient,
} from '../../shared/redis.js';
import { startRedisCluster, type RedisClusterHandle } from '../../shared/redis-server.js';
import { RunStore } from '../../shared/run/run-store.js';
import { runCoreScenario } from '../helpers/core-run.js';
import { FAST, runDemo } from '../helpers/demo.js';
import { openShardedRun } from '../helpers/sharded-run.js';
import { exitOf, killLeftovers, spawnRole } from '../helpers/processes.js';
import { pollUntil, testQueue } from '../helpers/redis.js';
import { useRedisCluster } from '../helpers/redis-cluster.js';

/** The master serving a slot, as `host:port`, from the cluster's own slot table. */
async function masterOf(redis: RedisClient, slot: number): Promise<string> {
  const table = await (redis as Cluster).cluster('SLOTS');
  const master = table.find(([low, high]) => slot >= low && slot <= high)?.[2];
  if (!master) throw new Error(`no master serves slot ${slot}`);
  return `${master[0]}:${master[1]}`;
}

describe('on a real Redis Cluster (3 masters)', () => {
  const cluster = useRedisCluster();
  afterEach(async () => {
    expect(await killLeftovers()).toEqual([]);
  });

  it('the core end-to-end run passes unchanged on the cluster, unsharded', async () => {
    await runCoreScenario({
      redis: cluster.redis,
      env: { ...FAST, REDIS_URL: cluster.url, QUEUE: testQueue(), RUN_ID: 'c1' },
      timeoutMs: 45_000,
    });
  });

  // Under Compose a killed node's container name stops resolving. ioredis resolves every startup name
  // on each connect() of a cluster client and fails the attempt when one does not resolve, so a
  // worker whose blocking connection BullMQ reconnected after a failover retried that name for ever
  // (getaddrinfo ENOTFOUND) and its shard never drained. A name that never resolves (RFC 2606
  // `.invalid`) takes the same path from the first connect.
  it('a startup node whose name does not resolve: clients connect through the others and a run joins', async () => {
    const url = cluster.url.replace('//127.0.0.1:', '//gone-node.invalid:');
    expect(url).toContain('gone-node.invalid:');
    const log = createLogger({ level: 'silent', service: 'test' });
    const client = createRedis({ redisUrl: url, redisTlsCaFile: undefined }, log, 'test-unresolvable');
    // A duplicate connects on its own, as BullMQ's blocking connection of a worker does.
    const copy = duplicateClient(client, 'test-unresolvable-copy');
    try {
      for (const c of [client, copy])
        await readyWithin(c, log, url, 15_000, 'one unresolvable startup node blocked the others');
      expect(await client.set(`${testQueue()}:probe`, 'ok')).toBe('OK');
    } finally {
      await Promise.all([closeRedis(copy), closeRedis(client)]);
    }
    await runCoreScenario({
      redis: cluster.redis,
      env: { ...FAST, REDIS_URL: url, QUEUE: testQueue(), SHARDS: '3', RUN_ID: 'dns1' },
      timeoutMs: 45_000,
    });
  });

  describe('SHARDS=3: one queue spread over the three masters', () => {
    const shards = 3;

    it('places each shard on a different master', async () => {
      const masters = await Promise.all(
        queueShards('conveyor', shards).map((sh) => masterOf(cluster.redis, sh.slot)),
      );
      expect(new Set(masters).size).toBe(shards);
    });

    it('the core end-to-end run passes unchanged: staggered producers, one join, exact totals', async () => {
      const s = await runCoreScenario({
        redis: cluster.redis,
        env: { ...FAST, REDIS_URL: cluster.url, QUEUE: testQueue(), SHARDS: String(shards), RUN_ID: 's1' },
        timeoutMs: 45_000,
      });
      // Round-robin: 4 jobs a producer over 3 shards puts work on every shard.
      expect(s.shards.every((sh) => sh.produced > 0)).toBe(true);
    });

    it('keeps jobs with the same shard key on one shard in put order, and an idempotency key once', async () => {
      const queue = testQueue();
      const { run, queues, producer, close } = await openShardedRun(cluster.redis, queue, 'k1', shards);
      try {
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
        const keyed = keyedJobId(await run.idPrefix(), 'order-7');
        expect(waiting.flat().filter((id) => id === keyed)).toHaveLength(1);
        const done = await producer.done();
        expect(done.join.reason).toBe('jobs-unfinished');
        expect(done.join.detail).toBe(13);
      } finally {
        await close();
      }
    });

    it('refuses a process whose SHARDS differs from the run’s, saying what to set', async () => {
      const queue = testQueue();
      await new RunStore(cluster.redis, queue, 'm1', shards).create(1);
      const env = { ...FAST, REDIS_URL: cluster.url, QUEUE: queue, RUN_ID: 'm1', SHARDS: '1' };
      const consumer = spawnRole('consumer', { ...env, CONSUMER_ID: 'c1' });
      const producer = spawnRole('producer', { ...env, PRODUCER_ID: 'p1', PRODUCERS: '1', JOBS: '1' });
      const exits = await Promise.all([exitOf(consumer), exitOf(producer)]);
      expect(exits.map((e) => e.code)).toEqual([1, 1]);
      for (const p of [consumer, producer])
        expect(p.output()).toContain('created with 3 shards; set SHARDS=3');
    });

    it('stops a consumer started before the run once the run turns out to have another SHARDS', async () => {
      const queue = testQueue();
      const env = { ...FAST, REDIS_URL: cluster.url, QUEUE: queue, RUN_ID: 'm2', SHARDS: '1' };
      const consumer = spawnRole('consumer', { ...env, CONSUMER_ID: 'early' });
      await consumer.waitFor('consumer ready');
      await new RunStore(cluster.redis, queue, 'm2', shards).create(1);
      expect((await exitOf(consumer)).code).toBe(1);
      expect(consumer.output()).toContain('created with 3 shards; set SHARDS=3');
    });
  });
});

describe('the demo on a local Redis Cluster (the README scale-out command)', () => {
  afterEach(async () => {
    expect(await killLeftovers()).toEqual([]);
  });

  it('DEMO_CLUSTER=3 starts 3 masters with replicas, spreads the queue over 3 shards, joins, exits 0', async () => {
    const out = await runDemo(
      {
        DEMO_CLUSTER: '3',
        DEMO_DASHBOARD: 'false',
        PRODUCERS: '2',
        CONSUMERS: '2',
        JOBS: '6',
        PRODUCE_INTERVAL_MS: '20',
        JOB_MS: '20',
      },
      90_000,
    );
    expect(out).toContain('Started a local Redis Cluster: 3 masters, each with a replica');
    expect(out).toContain('the queue is spread over 3 shards');
    expect(out).toMatch(/run demo-\d+ joined at /);
    expect(out).toContain('jobs: produced 12, completed 12, failed 0');
    expect(out).toContain('All 4 processes exited 0.');
  });
});

// BullMQ resets a worker's blocking connection by disconnecting it and awaiting connect(). With
// ioredis's cluster ready check, a connect() made while CLUSTER INFO says fail (or the check lands on
// the dead master) reconnects under a new connect() and never settles the first, so after a failover
// under Compose a worker neither fetched again nor closed. Here a master dies with no replica to take
// over, so the cluster stays failed for as long as the test needs.
describe('a cluster client reconnecting while the cluster is failed', () => {
  let cluster: RedisClusterHandle | undefined;
  afterAll(async () => {
    await cluster?.stop();
  });

  it('connect() settles, ready from the slot map, instead of waiting on a ready check that fails', async () => {
    const binary = inject('redisServerBinary');
    if (!binary) throw new Error('this test starts a Redis Cluster: install redis-server');
    cluster = await startRedisCluster({ binary, masters: 3 });
    const log = createLogger({ level: 'silent', service: 'test' });
    const client = createRedis({ redisUrl: cluster.url, redisTlsCaFile: undefined }, log, 'test-failed');
    const witness = new Redis(cluster.nodes[0]!.port, '127.0.0.1', { lazyConnect: true });
    try {
      await readyWithin(client, log, cluster.url, 15_000, 'the cluster never became ready');
      cluster.nodes[2]!.process.kill('SIGKILL');
      await pollUntil(
        'the other masters to mark the dead one failed',
        async () => (/cluster_state:fail/.test(await witness.cluster('INFO')) ? true : undefined),
        20_000,
        100,
      );
      const ended = new Promise((resolve) => client.once('end', resolve));
      client.disconnect();
      await ended;
      let timer: NodeJS.Timeout | undefined;
      const outcome = await Promise.race([
        client.connect().then(
          () => 'ready',
          (err: Error) => `failed: ${err.message}`,
        ),
        new Promise<string>((resolve) => (timer = setTimeout(() => resolve('still pending'), 10_000))),
      ]).finally(() => clearTimeout(timer));
      expect(outcome).toBe('ready');
      expect(client.status).toBe('ready');
    } finally {
      witness.disconnect();
      client.disconnect();
    }
  });
});
