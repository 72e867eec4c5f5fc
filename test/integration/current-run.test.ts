import { describe, expect, it } from 'vitest';
import { runKeys } from '../../shared/keys.js';
import { resolveRunId } from '../../shared/run/current-run.js';
import { RunStore } from '../../shared/run/run-store.js';
import { readRunStatus } from '../../shared/run/status.js';
import { exitOf, spawnRole } from '../helpers/processes.js';
import { connect, pollUntil, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

describe('RUN_ID=auto: the queue’s open run, or the next one', () => {
  const ctx = useTestQueue();

  it('gives processes that start at the same time one run, created once', async () => {
    const clients = Array.from({ length: 12 }, () => connect());
    ctx.cleanups.push(() => Promise.resolve(clients.forEach((c) => c.disconnect())));
    const resolved = await Promise.all(clients.map((c) => resolveRunId(c, ctx.queue, 'auto')));
    expect(new Set(resolved.map((r) => r.runId))).toEqual(new Set(['run-1']));
    expect(resolved.filter((r) => r.source === 'new')).toHaveLength(1);
    // Nothing joined yet: still the same run for a late starter.
    expect(await resolveRunId(ctx.redis, ctx.queue, 'auto')).toEqual({ runId: 'run-1', source: 'open' });
  });

  it('keeps an explicit RUN_ID as it is', async () => {
    expect(await resolveRunId(ctx.redis, ctx.queue, 'nightly-7')).toEqual({
      runId: 'nightly-7',
      source: 'explicit',
    });
    expect(await ctx.redis.exists(`{${ctx.queue}}:${ctx.queue}:conveyor:current-run`)).toBe(0);
  });

  it('starts the next run once the last joined: a second start with nothing changed runs again', async () => {
    const env = {
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'auto',
      PRODUCERS: '1',
      JOBS: '3',
      JOB_MS: '10',
      PRODUCE_INTERVAL_MS: '10',
    };
    for (const expected of ['run-1', 'run-2']) {
      const consumer = spawnRole('consumer', env, { label: `consumer ${expected}` });
      const producer = spawnRole('producer', env, { label: `producer ${expected}` });
      expect((await exitOf(producer, 30_000)).code).toBe(0);
      expect((await exitOf(consumer, 30_000)).code).toBe(0);
      const status = await readRunStatus(ctx.redis, ctx.queue, expected, 10_000);
      expect(status?.join.state).toBe('joined');
      expect(status?.jobs).toMatchObject({ produced: 3, completed: 3, failed: 0, unfinished: 0 });
      expect(producer.output()).toContain(`RUN_ID=auto: run ${expected}`);
      expect(consumer.output()).toContain(`RUN_ID=auto: run ${expected}`);
    }
  });

  it('never reuses a run whose keys expired after its join (retention): the next start gets a new one', async () => {
    const env = {
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'auto',
      PRODUCERS: '1',
      JOBS: '2',
      JOB_MS: '10',
      PRODUCE_INTERVAL_MS: '10',
      RUN_RETENTION_S: '1',
    };
    // Both resolve before the run exists (the consumer first, then the producer, which creates it
    // after resolving): only their marks once done with it can tell that run-1 existed.
    const consumer = spawnRole('consumer', env, { label: 'consumer run-1' });
    await consumer.waitFor('RUN_ID=auto: run run-1', 30_000);
    const producer = spawnRole('producer', env, { label: 'producer run-1' });
    expect((await exitOf(producer, 30_000)).code).toBe(0);
    expect((await exitOf(consumer, 30_000)).code).toBe(0);
    await pollUntil('run-1 to expire after its retention', async () =>
      (await ctx.redis.exists(runKeys(ctx.queue, 'run-1').meta)) === 0 ? true : undefined,
    );
    expect(await resolveRunId(ctx.redis, ctx.queue, 'auto')).toEqual({ runId: 'run-2', source: 'new' });
  });

  it('starts the next run once the last was abandoned (its producers would be refused)', async () => {
    expect(await resolveRunId(ctx.redis, ctx.queue, 'auto')).toEqual({ runId: 'run-1', source: 'new' });
    const run = new RunStore(ctx.redis, ctx.queue, 'run-1');
    await run.create(1);
    // Its one producer never comes; the checks give up on it after 1 ms.
    await pollUntil('run-1 to be abandoned', async () =>
      (await run.tryJoin({ abandonMs: 1 })).reason === 'abandoned-now' ? true : undefined,
    );
    expect(await resolveRunId(ctx.redis, ctx.queue, 'auto')).toEqual({ runId: 'run-2', source: 'new' });
  });
});
