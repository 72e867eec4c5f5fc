import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startConsumer } from '../../lib/consumer.js';
import { defineJob } from '../../shared/jobs/define.js';
import { callbackPayload } from '../../shared/jobs/run-report-job.js';
import { callbackJobId, queueShards } from '../../shared/keys.js';
import { callbackShard } from '../../shared/run/callbacks.js';
import { RunStore } from '../../shared/run/run-store.js';
import { exitOf, killLeftovers, spawnTracked } from '../helpers/processes.js';
import { pollUntil, testQueue } from '../helpers/redis.js';
import { useRedisCluster } from '../helpers/redis-cluster.js';

/**
 * Join callbacks on a real Redis Cluster with SHARDS=3: a run's state lives in the queue's slot, its
 * callback job in the slot of the shard its id hashes to, mostly on another master. The joining
 * processes are SIGKILLed around the join as in exactly-once.test.ts (no failover here).
 */
const RUNS = Number(process.env.CALLBACK_CLUSTER_RUNS ?? '40');

const ledgerJob = defineJob({
  name: 'ledger',
  schema: callbackPayload(z.unknown()),
  handler: (p) => Promise.resolve(p.totals.produced),
});

describe('join callbacks on a Redis Cluster, SHARDS=3', () => {
  const cluster = useRedisCluster();
  afterEach(async () => {
    expect(await killLeftovers()).toEqual([]);
  });

  it(`${RUNS} runs, joining processes SIGKILLed around the join: one callback job each, in its own slot`, async () => {
    const queue = testQueue();
    const shards = 3;
    const consumer = await startConsumer({
      redisUrl: cluster.url,
      queue,
      shards,
      jobs: [ledgerJob],
      concurrency: 3,
      heartbeatMs: 200,
      flushMs: 20,
    });
    let incarnations = 0;
    try {
      for (let seed = 1; ; seed++) {
        incarnations++;
        const p = spawnTracked(
          `crasher#${seed}`,
          process.execPath,
          ['--import', 'tsx', 'test/fixtures/callback-crasher.ts'],
          {
            REDIS_URL: cluster.url,
            QUEUE: queue,
            SHARDS: '3',
            RUNS: String(RUNS),
            SEED: String(seed),
            KILL_P: '0.03',
          },
        );
        const { code } = await exitOf(p, 120_000);
        if (code === 0 && p.stdout().includes('ok')) break;
        if (incarnations > 200) throw new Error(`no progress:\n${p.output()}`);
      }
      const stores = Array.from(
        { length: RUNS },
        (_, i) => new RunStore(cluster.redis, queue, `r${i}`, shards),
      );
      await pollUntil(
        'every callback finished',
        async () => {
          const states = await Promise.all(stores.map((s) => s.callbackStates()));
          return states.every((s) => s['on-join'] === 'completed' && s['on-success'] === 'completed')
            ? true
            : undefined;
        },
        60_000,
        200,
      );
      const added = new Map<string, number>();
      for (const shard of queueShards(queue, shards))
        for (const [, fields] of await cluster.redis.xrange(
          `${shard.prefix}:${shard.name}:events`,
          '-',
          '+',
        )) {
          const f = Object.fromEntries(fields.flatMap((v, i, a) => (i % 2 ? [] : [[v, a[i + 1]]])));
          if (f.event === 'added')
            added.set(`${shard.index}:${f.jobId}`, (added.get(`${shard.index}:${f.jobId}`) ?? 0) + 1);
        }
      const prefixes = await Promise.all(stores.map((s) => s.idPrefix()));
      const expected = prefixes.flatMap((p) =>
        ['on-join', 'on-success'].map(
          (name) => `${callbackShard(p, name, shards)}:${callbackJobId(p, name)}`,
        ),
      );
      const missing = expected.filter((k) => !added.has(k));
      const doubled = [...added].filter(([, n]) => n > 1).map(([k]) => k);
      const inOtherSlot = expected.filter((k) => !k.startsWith('0:')).length;
      console.log(
        `cluster callback ledger: ${RUNS} runs, ${added.size} callback jobs for ${expected.length} due ` +
          `(${inOtherSlot} on a shard other than 0), missing ${missing.length}, doubled ${doubled.length}; ` +
          `${incarnations - 1} joining processes SIGKILLed`,
      );
      expect(missing).toEqual([]);
      expect(doubled).toEqual([]);
      expect(added.size).toBe(expected.length);
    } finally {
      await consumer.stop('test over');
    }
  }, 300_000);
});
