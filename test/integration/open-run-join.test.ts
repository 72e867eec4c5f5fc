import { getEventListeners } from 'node:events';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { openRun } from '../../lib/run.js';
import { RunStore } from '../../shared/run/run-store.js';
import { dropQueue, pollUntil } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

const host = { host: 'test', pid: 1 };

/** `openRun(...).join()`, the distributed `await queue.join()`, when the run keeps it waiting or is not there. */
describe('openRun().join()', () => {
  const ctx = useTestQueue();

  /** A handle on run `r`; `lines` collects its log (debug and up). */
  const handle = () => {
    const lines: string[] = [];
    const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(line) });
    const run = openRun({ runId: 'r', queue: ctx.queue, redis: ctx.redis, log });
    ctx.cleanups.push(() => run.close());
    return { run, lines };
  };

  /** Run `r`, waiting for its one producer (which never comes). */
  const pendingRun = async () => {
    const store = new RunStore(ctx.redis, ctx.queue, 'r');
    await store.create(1);
    return store;
  };

  it('bug F10: join() keeps one abort listener however many times it polls', async () => {
    await pendingRun();
    const { run } = handle();
    const warnings: Error[] = [];
    const onWarning = (w: Error) => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const signal = new AbortController().signal;
      // Polled every 5 ms for a second: some 200 polls.
      await expect(run.join({ pollMs: 5, timeoutMs: 1_000, signal })).rejects.toThrow(/did not join within/);
      expect(getEventListeners(signal, 'abort')).toHaveLength(0);
    } finally {
      process.off('warning', onWarning);
    }
    expect(warnings.map((w) => `${w.name}: ${w.message}`)).toEqual([]);
  });

  it('bug F10: join() rejects at once when the run it was waiting for vanishes from Redis', async () => {
    await pendingRun();
    const { run, lines } = handle();
    const joining = run.join({ pollMs: 50, timeoutMs: 5_000 });
    const outcome = joining.then(
      () => 'joined',
      (err: unknown) => err,
    );
    await pollUntil('the join to find the run', () =>
      Promise.resolve(lines.some((l) => l.includes('waiting for the run to join')) ? true : undefined),
    );
    // Redis restarted without persistence (or was flushed): the run, its index, everything is gone.
    await dropQueue(ctx.redis, ctx.queue);
    const started = Date.now();
    const err = await outcome;
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(err).toMatchObject({ name: 'RunError', code: 'gone' });
    expect(String(err)).toMatch(/state is gone from Redis/);
  });

  it('bug F10: join() rejects at once when the queue’s run index names a run whose state is gone', async () => {
    const store = await pendingRun();
    // Evicted (maxmemory with allkeys-lru) or lost in a partial restore: the index still names it.
    await ctx.redis.del(store.keys.meta);
    const { run } = handle();
    const started = Date.now();
    await expect(run.join({ timeoutMs: 5_000 })).rejects.toMatchObject({ name: 'RunError', code: 'gone' });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('join() on a run whose keys expired after its join says so at once', async () => {
    const store = new RunStore(ctx.redis, ctx.queue, 'r');
    await store.create(1, 10_000, 200);
    await store.registerProducer('p1', host, 10_000);
    await store.producerDone('p1');
    await pollUntil('the run to expire', async () => ((await store.exists()) ? undefined : true));
    const { run } = handle();
    const err: unknown = await run.join({ timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(err).toMatchObject({ name: 'RunError', code: 'gone' });
    expect(String(err)).toMatch(/has ended .* expired after its retention/);
  });

  it('bug F10: join() on a run that never existed rejects after existGraceMs, not after its whole timeout', async () => {
    const { run } = handle();
    const started = Date.now();
    const err: unknown = await run.join({ existGraceMs: 300, timeoutMs: 5_000 }).catch((e: unknown) => e);
    expect(Date.now() - started).toBeLessThan(2_500);
    expect(err).toMatchObject({ name: 'RunError', code: 'no-run' });
    expect(String(err)).toMatch(/does not exist/);
  });

  it('join() waits for a run that a producer creates within existGraceMs', async () => {
    const { run } = handle();
    const joining = run.join({ existGraceMs: 5_000, timeoutMs: 10_000, pollMs: 50 });
    const store = await pendingRun();
    await store.registerProducer('p1', host, 10_000);
    await store.producerDone('p1');
    expect((await joining).join.state).toBe('joined');
  });
});
