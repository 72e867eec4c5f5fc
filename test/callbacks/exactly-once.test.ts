import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { z } from 'zod';
import { startConsumer } from '../../lib/consumer.js';
import { defineJob } from '../../shared/jobs/define.js';
import { callbackPayload } from '../../shared/jobs/run-report-job.js';
import { callbackJobId, queueShards, runKeys } from '../../shared/keys.js';
import { freePort, startRedisServer, type RedisServerHandle } from '../../shared/redis-server.js';
import { listCallbacksDue } from '../../shared/run/run-store.js';
import { connect, pollUntil, testQueue } from '../helpers/redis.js';
import { exitOf, killLeftovers, spawnTracked } from '../helpers/processes.js';

/**
 * Join callbacks are enqueued exactly once (docs/callbacks.md): processes that join runs and deliver
 * their callbacks are SIGKILLed at random points around the join, and Redis itself is SIGKILLed and
 * restarted (AOF, appendfsync always) while they work. A consumer serving the queue runs the
 * callbacks (finished jobs are not kept, so a second add could not hide behind BullMQ's id check)
 * and delivers due ones too. The ledger is BullMQ's own events stream: one `added` per job created.
 * CALLBACK_RUNS sets the number of runs (default 200), CALLBACK_KILL_P the chance per kill point.
 */
const RUNS = Number(process.env.CALLBACK_RUNS ?? '200');
const KILL_P = Number(process.env.CALLBACK_KILL_P ?? '0.02');

const ledgerJob = defineJob({
  name: 'ledger',
  schema: callbackPayload(z.unknown()),
  handler: (p) => Promise.resolve(p.totals.produced),
});

afterEach(async () => {
  expect(await killLeftovers()).toEqual([]);
});

describe('join callbacks: exactly once', () => {
  it(`${RUNS} runs, their joining process SIGKILLed around the join, Redis SIGKILLed and restarted (AOF always)`, async () => {
    const binary = inject('redisServerBinary');
    if (!binary) throw new Error('this test needs redis-server on PATH');
    const dir = mkdtempSync(join(tmpdir(), 'conveyor-cb-'));
    const port = await freePort();
    const args = ['--appendonly', 'yes', '--appendfsync', 'always', '--dir', dir];
    let server: RedisServerHandle = await startRedisServer({ binary, port, args });
    const url = server.url;
    const queue = testQueue();
    const consumer = await startConsumer({
      redisUrl: url,
      queue,
      jobs: [ledgerJob],
      concurrency: 4,
      heartbeatMs: 200,
      flushMs: 20,
    });
    const redis = connect(url);
    const kills: Record<string, number> = {};
    let incarnations = 0;
    let redisRestarts = 0;
    try {
      let joined = 0;
      for (let seed = 1; ; seed++) {
        incarnations++;
        const p = spawnTracked(
          `crasher#${seed}`,
          process.execPath,
          ['--import', 'tsx', 'test/fixtures/callback-crasher.ts'],
          { REDIS_URL: url, QUEUE: queue, RUNS: String(RUNS), SEED: String(seed), KILL_P: String(KILL_P) },
        );
        // Redis dies twice while the crashers work: once a third of the runs joined, again at two thirds.
        const restartAt = [Math.floor(RUNS / 3), Math.floor((2 * RUNS) / 3)][redisRestarts];
        const watcher = setInterval(() => {
          const now = joined + (p.stdout().match(/^joined /gm)?.length ?? 0);
          if (restartAt !== undefined && now >= restartAt && redisRestarts < 2 && !restarting) {
            restarting = (async () => {
              redisRestarts++;
              server.process.kill('SIGKILL');
              await new Promise((r) => server.process.once('exit', r));
              server = await startRedisServer({ binary, port, args });
              restarting = undefined;
            })();
          }
        }, 5);
        let restarting: Promise<void> | undefined;
        const { code, signal } = await exitOf(p, 120_000);
        clearInterval(watcher);
        await restarting;
        joined += p.stdout().match(/^joined /gm)?.length ?? 0;
        for (const m of p.stdout().matchAll(/^kill (\S+)$/gm)) kills[m[1]!] = (kills[m[1]!] ?? 0) + 1;
        if (code === 0 && p.stdout().includes('ok')) break;
        expect(signal === 'SIGKILL' || code !== 0, p.output()).toBe(true);
        if (incarnations > 400) throw new Error('too many incarnations: the crashers make no progress');
      }
      expect(redisRestarts).toBe(2);
      // Most runs were joined by a crasher; the consumer's join check may have joined a few first.
      const runStates = await Promise.all(
        Array.from({ length: RUNS }, (_, i) =>
          redis.hget(`{${queue}}:${queue}:conveyor:run:r${i}:meta`, 'state'),
        ),
      );
      expect(runStates.filter((s) => s === 'joined').length).toBe(RUNS);

      // Every callback job ran (the consumer records them), and the outbox is empty.
      await pollUntil(
        'every callback job finished',
        async () => {
          let finished = 0;
          for (let i = 0; i < RUNS; i++) {
            const states = await redis.hmget(
              `{${queue}}:${queue}:conveyor:run:r${i}:meta`,
              'cb:on-join',
              'cb:on-success',
            );
            finished += states.filter((s) => s === 'completed').length;
          }
          return finished === 2 * RUNS ? true : undefined;
        },
        60_000,
        200,
      );
      expect(await listCallbacksDue(redis, queue)).toEqual([]);

      // The ledger: BullMQ's events stream has one `added` per job it created.
      const shard = queueShards(queue, 1)[0]!;
      const events = await redis.xrange(`${shard.prefix}:${shard.name}:events`, '-', '+');
      const added = new Map<string, number>();
      let ignored = 0;
      for (const [, fields] of events) {
        const f = Object.fromEntries(fields.flatMap((v, i, a) => (i % 2 ? [] : [[v, a[i + 1]]])));
        if (f.event === 'added') added.set(f.jobId!, (added.get(f.jobId!) ?? 0) + 1);
        if (f.event === 'duplicated') ignored++;
      }
      const prefixes = await Promise.all(
        Array.from({ length: RUNS }, (_, i) => redis.hget(runKeys(queue, `r${i}`).meta, 'idPrefix')),
      );
      const expected = prefixes.flatMap((p) => [
        callbackJobId(p!, 'on-join'),
        callbackJobId(p!, 'on-success'),
      ]);
      const missing = expected.filter((id) => !added.has(id));
      const doubled = [...added].filter(([, n]) => n > 1).map(([id]) => id);
      console.log(
        `callback ledger: ${RUNS} runs joined (${joined} by the crashers), ${added.size} callback jobs for ${expected.length} due, ` +
          `missing ${missing.length}, doubled ${doubled.length} (${ignored} repeated adds BullMQ ignored); ${incarnations} joining processes ` +
          `(${incarnations - 1} SIGKILLed: ${JSON.stringify(kills)}), Redis SIGKILLed ${redisRestarts}x`,
      );
      expect(missing).toEqual([]);
      expect(doubled).toEqual([]);
      expect(added.size).toBe(expected.length);
    } finally {
      await consumer.stop('test over');
      redis.disconnect();
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);
});
