import { expect } from 'vitest';
import { putJobId, queueShards, shardJobPrefix } from '../../shared/keys.js';
import type { RedisClient } from '../../shared/redis.js';
import { readRunStatus, type RunStatus } from '../../shared/run/status.js';
import { exitOf, spawnRole, type Spawned } from './processes.js';
import { pollUntil } from './redis.js';

const PRODUCERS = ['p1', 'p2', 'p3'];
const JOBS = 4;

/**
 * The core end-to-end run, one body for one Redis and for a cluster with shards: 2 consumers, then
 * 3 producers of 4 jobs each started one after another. Before the last producer starts every job so
 * far may be finished, yet the run waits for it. Then: joined exactly once, exact totals, every
 * acknowledged job completed, every process exited 0. Returns the final status for further checks.
 */
export async function runCoreScenario(opts: {
  redis: RedisClient;
  /** REDIS_URL, QUEUE, RUN_ID, SHARDS and timings; the scenario adds the rest. */
  env: Record<string, string>;
  timeoutMs?: number;
}): Promise<RunStatus> {
  const { redis } = opts;
  const queue = opts.env.QUEUE!;
  const runId = opts.env.RUN_ID!;
  const shards = Number(opts.env.SHARDS ?? '1');
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const env = { ...opts.env, PRODUCERS: '3', JOBS: String(JOBS), PRODUCE_INTERVAL_MS: '30', JOB_MS: '40' };
  const status = async (): Promise<RunStatus> => {
    const s = await readRunStatus(redis, queue, runId, 3_000);
    if (!s) throw new Error('run not found');
    return s;
  };
  const consumers = ['c1', 'c2'].map((id) =>
    spawnRole('consumer', { ...env, CONSUMER_ID: id }, { label: id }),
  );
  const producers: Spawned[] = [];
  for (const id of PRODUCERS) {
    const p = spawnRole('producer', { ...env, PRODUCER_ID: id }, { label: id });
    producers.push(p);
    expect((await exitOf(p, timeoutMs)).code).toBe(0);
    if (id !== PRODUCERS.at(-1)) {
      await pollUntil('jobs so far to finish', async () =>
        (await status()).jobs.unfinished === 0 ? true : undefined,
      );
      const s = await status();
      expect(s.join).toMatchObject({ state: 'pending', waitingFor: 'producers-missing' });
      expect(s.shards.every((sh) => !sh.closed)).toBe(true);
    }
  }
  const exits = await Promise.all(consumers.map((c) => exitOf(c, timeoutMs)));
  expect(exits.map((e) => e.code)).toEqual([0, 0]);

  const s = await status();
  const total = PRODUCERS.length * JOBS;
  expect(s.join.state).toBe('joined');
  expect(s.jobs).toMatchObject({
    produced: total,
    completed: total,
    failed: 0,
    unfinished: 0,
    duplicateFinishes: 0,
  });
  expect(s.join.totals).toMatchObject({ produced: total, completed: total, failed: 0 });
  expect(s.producers).toMatchObject({ expected: 3, done: 3, lost: 0 });
  expect(s.consumers.map((c) => c.state)).toEqual(['cancelled', 'cancelled']);
  expect(s.shards).toHaveLength(shards);
  for (const sh of s.shards) expect(sh).toMatchObject({ closed: true, unfinished: 0 });
  const completed = await Promise.all(
    queueShards(queue, shards).map((sh) => redis.zrange(`${shardJobPrefix(sh)}completed`, '0', '-1')),
  );
  const expected = PRODUCERS.flatMap((p) =>
    Array.from({ length: JOBS }, (_, i) => putJobId(s.idPrefix!, p, i)),
  );
  expect(completed.flat().sort()).toEqual(expected.sort());
  const joinedLines = [...consumers, ...producers]
    .flatMap((p) => p.output().split('\n'))
    .filter((l) => l.includes('"msg":"run joined"'));
  expect(joinedLines).toHaveLength(1);
  return s;
}
