import { projectRoot } from '../../shared/roles.js';
import { describe, expect, it } from 'vitest';
import { readRunStatus } from '../../shared/run/status.js';
import { FAST } from '../helpers/demo.js';
import { exitOf, spawnRole, spawnTracked } from '../helpers/processes.js';
import { redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

/** The commands: ON_JOIN_TYPE/ON_SUCCESS_TYPE on the producer, COLLECT_RESULTS and status --results. */
describe('callbacks and results from the commands', () => {
  const ctx = useTestQueue();

  it('a run with ON_JOIN_TYPE=run-report and COLLECT_RESULTS: the consumer runs the callback before it exits; status --results lists each put with its outcome and value in put order', async () => {
    const base = {
      ...FAST,
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'cli',
      JOB_MS: '10',
      PRODUCE_INTERVAL_MS: '0',
    };
    const consumer = spawnRole('consumer', { ...base, CONCURRENCY: '3' });
    const producer = spawnRole('producer', {
      ...base,
      JOBS: '4',
      COLLECT_RESULTS: 'true',
      ON_JOIN_TYPE: 'run-report',
      ON_JOIN_PAYLOAD: '{"next":"stage-2"}',
      ON_SUCCESS_TYPE: 'run-report',
    });
    expect((await exitOf(producer)).code, producer.output()).toBe(0);
    expect((await exitOf(consumer)).code, consumer.output()).toBe(0);
    expect(consumer.output()).toContain('run \\"cli\\" joined: 4 completed, 0 failed');
    const s = await readRunStatus(ctx.redis, ctx.queue, 'cli', 3_000);
    expect(s?.state).toBe('done');
    expect(s?.callbacks.map((c) => [c.name, c.state])).toEqual([
      ['on-join', 'completed'],
      ['on-success', 'completed'],
    ]);

    const status = spawnTracked(
      'status',
      process.execPath,
      ['--import', 'tsx', `${projectRoot}/scripts/status/main.ts`, '--run', 'cli', '--results', '--json'],
      { REDIS_URL: redisUrl(), QUEUE: ctx.queue },
    );
    expect((await exitOf(status)).code, status.output()).toBe(0);
    const results = JSON.parse(status.stdout()) as { outcome: string; value: unknown }[];
    expect(results.map((r) => [r.outcome, r.value])).toEqual([0, 1, 2, 3].map((v) => ['completed', v]));
  });

  it('ON_JOIN_PAYLOAD without ON_JOIN_TYPE, bad JSON, an unknown type: each refused naming the variable', async () => {
    const base = { ...FAST, REDIS_URL: redisUrl(), QUEUE: ctx.queue, RUN_ID: 'bad', JOBS: '1' };
    for (const [env, message] of [
      [{ ON_JOIN_PAYLOAD: '{}' }, 'ON_JOIN_PAYLOAD: set only with ON_JOIN_TYPE'],
      [{ ON_JOIN_TYPE: 'run-report', ON_JOIN_PAYLOAD: '{' }, 'ON_JOIN_PAYLOAD: must be JSON'],
      [{ ON_SUCCESS_TYPE: 'nope' }, 'ON_SUCCESS_TYPE: unknown job type "nope"'],
    ] as const) {
      const p = spawnRole('producer', { ...base, ...env });
      expect((await exitOf(p)).code, p.output()).toBe(2);
      expect(p.output()).toContain(message);
    }
    expect(await readRunStatus(ctx.redis, ctx.queue, 'bad', 3_000)).toBeNull();
  });
});
