import { describe, expect, it } from 'vitest';
import { openProducer, type ProducerClient } from '../../lib/producer.js';
import { openRun } from '../../lib/run.js';
import { EvictionPolicyError } from '../../shared/redis-policy.js';
import { startRedisServer } from '../../shared/redis-server.js';
import { RunError } from '../../shared/run/run-store.js';
import { pollUntil, redisServerBinary, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

const HEARTBEAT_MS = 100;
/** Far above a heartbeat, so a loaded machine cannot make the test fail; the lease is what a stop must beat. */
const LEASE_MS = 5_000;

/** Resolves with the abort's time once `signal` fires; rejects after `timeoutMs`. */
const abortedAt = (signal: AbortSignal, timeoutMs = 15_000): Promise<number> =>
  signal.aborted
    ? Promise.resolve(Date.now())
    : new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`the signal did not fire within ${timeoutMs} ms`)),
          timeoutMs,
        );
        signal.addEventListener(
          'abort',
          () => {
            clearTimeout(timer);
            resolve(Date.now());
          },
          { once: true },
        );
      });

/** Puts until a put is refused; the refusal. */
async function putUntilRefused(producer: ProducerClient): Promise<unknown> {
  return pollUntil(
    'a put to be refused',
    () =>
      producer.put('sleep', { value: 1, ms: 0 }).then(
        () => undefined,
        (err: unknown) => err,
      ),
    15_000,
    10,
  );
}

/** openProducer, the library's producer: it reacts to what its heartbeat hears, as the command does. */
describe('openProducer', () => {
  const ctx = useTestQueue();

  const open = (runId: string, more: { producerId?: string; producers?: number } = {}) =>
    openProducer({
      redisUrl: redisUrl(),
      queue: ctx.queue,
      runId,
      heartbeatMs: HEARTBEAT_MS,
      leaseMs: LEASE_MS,
      ...more,
    });

  it('stops putting within a heartbeat of a run cancel: its signal fires and put rejects with a RunError saying why', async () => {
    const producer = await open('cancelled-run');
    ctx.cleanups.push(() => producer.close());
    const run = openRun({ redisUrl: redisUrl(), queue: ctx.queue, runId: 'cancelled-run' });
    ctx.cleanups.push(() => run.close());
    await producer.put('sleep', { value: 0, ms: 0 });
    expect(producer.state).toBe('running');
    expect(producer.signal.aborted).toBe(false);

    const cancelledAt = Date.now();
    expect((await run.cancel()).outcome).toBe('cancelled');
    const err = await putUntilRefused(producer);
    expect(err).toBeInstanceOf(RunError);
    expect((err as RunError).code).toBe('cancelled');
    expect((err as RunError).message).toMatch(/was cancelled: this producer puts no more jobs/);
    expect(producer.state).toBe('cancelled');
    expect(producer.signal.aborted).toBe(true);
    expect(producer.signal.reason).toBe(err);
    expect((await abortedAt(producer.signal)) - cancelledAt).toBeLessThan(LEASE_MS);
    // Every later put is refused at once, before anything reaches Redis; done still reports what it put.
    await expect(producer.putMany([{ type: 'sleep', payload: { value: 2, ms: 0 } }])).rejects.toBe(err);
    const put = producer.produced;
    const outcome = await producer.done();
    expect(outcome.state).toBe('done');
    expect((await run.status())?.jobs.produced).toBe(put);
  });

  it('stops putting when another producer registers with its id (fenced): signal, state and a clear rejection', async () => {
    const first = await open('fenced-run', { producerId: 'p' });
    ctx.cleanups.push(() => first.close());
    await first.put('sleep', { value: 0, ms: 0 });
    const second = await open('fenced-run', { producerId: 'p' });
    ctx.cleanups.push(() => second.close());

    await abortedAt(first.signal);
    expect(first.state).toBe('fenced');
    const err = await first.put('sleep', { value: 1, ms: 0 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RunError);
    expect((err as RunError).code).toBe('fenced');
    expect((err as RunError).message).toMatch(/another producer registered with this producer id/);
    // The new incarnation is unaffected.
    expect(second.state).toBe('running');
    await second.put('sleep', { value: 2, ms: 0 });
  });

  it('resolves runId "auto" to the queue\'s open run, as the commands do', async () => {
    const a = await open('auto', { producers: 2 });
    ctx.cleanups.push(() => a.close());
    const b = await open('auto', { producerId: 'b', producers: 2 });
    ctx.cleanups.push(() => b.close());
    expect(a.runId).toMatch(/^run-\d+$/);
    expect(b.runId).toBe(a.runId);
  });

  it('refuses a Redis that may evict keys, saying how to fix it', async () => {
    const server = await startRedisServer({
      binary: redisServerBinary(),
      args: ['--maxmemory-policy', 'allkeys-lru'],
    });
    ctx.cleanups.push(() => server.stop());
    const err = await openProducer({ redisUrl: server.url, queue: ctx.queue, runId: 'r' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EvictionPolicyError);
    expect((err as Error).message).toContain('maxmemory-policy noeviction');
  });
});
