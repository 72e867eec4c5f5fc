import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runKeys } from '../../shared/keys.js';
import { RunStore } from '../../shared/run/run-store.js';
import { FAST } from '../helpers/demo.js';
import { renderTree, startOtlpReceiver, type ReceivedSpan } from '../helpers/otlp-receiver.js';
import { exitOf, spawnRole, type Spawned } from '../helpers/processes.js';
import { pollUntil, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

const JOB_MODULES = './test/fixtures/trace-jobs.ts';

describe('one trace per run, across real processes exporting over OTLP/HTTP', () => {
  const ctx = useTestQueue();
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
  beforeEach(async () => {
    receiver = await startOtlpReceiver();
  });
  afterEach(() => receiver.close());

  it('2 producers x 2 consumers with a retry, a timeout, a cancel and a join callback: every span under its run, the run span ending at the join', async () => {
    const env = {
      ...FAST,
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'r',
      JOB_MODULES,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
    };
    const consumers: Spawned[] = ['c1', 'c2'].map((id) =>
      spawnRole('consumer', { ...env, CONSUMER_ID: id, CONCURRENCY: '2' }, { label: id }),
    );
    const producers: Spawned[] = ['p1', 'p2'].map((id) =>
      spawnRole(
        'producer',
        {
          ...env,
          PRODUCER_ID: id,
          PRODUCERS: '2',
          JOBS: '4',
          JOB_TYPE: 'traced',
          JOB_PAYLOAD: '{}',
          PRODUCE_INTERVAL_MS: '0',
          BATCH_SIZE: '2',
          ATTEMPTS: '2',
          BACKOFF_MS: '10',
          ON_JOIN_TYPE: 'traced-callback',
        },
        { label: id },
      ),
    );
    // Cancel the job that waits for it, from here (a process without tracing).
    await Promise.any(consumers.map((c) => c.waitFor('waiting to be cancelled', 40_000)));
    const line = consumers
      .flatMap((c) => c.output().split('\n'))
      .find((l) => l.includes('waiting to be cancelled'));
    const cancelId = (JSON.parse(line!) as { cancelMe: string }).cancelMe;
    expect((await new RunStore(ctx.redis, ctx.queue, 'r').cancelJob(cancelId)).outcome).toBe('signalled');

    for (const p of [...producers, ...consumers]) expect((await exitOf(p, 40_000)).code, p.output()).toBe(0);
    const meta = runKeys(ctx.queue, 'r').meta;
    const [createdAt = NaN, joinedAt = NaN] = (await ctx.redis.hmget(meta, 'createdAt', 'joinedAt')).map(
      Number,
    );

    // Every process flushed its spans before exiting; the run span is the last to arrive.
    const runSpan = await pollUntil('the run span', () =>
      Promise.resolve(receiver.spans.find((s) => s.name === 'conveyor.run')),
    );
    const trace = receiver.spans.filter((s) => s.traceId === runSpan.traceId);
    const byId = new Map(trace.map((s) => [s.spanId, s]));
    const tree = renderTree(trace, runSpan.spanId);
    console.log(`the run's trace:\n${tree}`);

    // Nothing of this run outside its trace.
    expect(receiver.spans.filter((s) => s.traceId !== runSpan.traceId)).toEqual([]);
    expect(receiver.spans.filter((s) => s.name === 'conveyor.run')).toHaveLength(1);

    // The run span: creation to join, in Redis's times, with the final totals.
    expect(runSpan.parentSpanId).toBe('');
    expect(runSpan.startMs).toBe(createdAt);
    expect(runSpan.endMs).toBe(joinedAt);
    expect(runSpan.attributes).toMatchObject({
      'conveyor.run.id': 'r',
      'messaging.destination.name': ctx.queue,
      'conveyor.run.produced': 8,
      'conveyor.run.completed': 7,
      'conveyor.run.cancelled': 1,
      'conveyor.run.failed': 0,
    });

    // Put batches: children of the run, from both producers, 8 jobs in all.
    const puts = trace.filter((s) => s.name === 'conveyor.put');
    for (const p of puts) expect(p.parentSpanId, tree).toBe(runSpan.spanId);
    expect(new Set(puts.map((p) => p.attributes['conveyor.producer']))).toEqual(new Set(['p1', 'p2']));
    expect(puts.reduce((n, p) => n + Number(p.attributes['messaging.batch.message_count']), 0)).toBe(8);

    // Job attempts: each a child of a put batch of its own producer, ended before the join.
    const attempts = trace.filter((s) => s.name === 'conveyor.job traced');
    for (const a of attempts) {
      const parent = byId.get(a.parentSpanId);
      expect(parent?.name, tree).toBe('conveyor.put');
      expect(String(a.attributes['messaging.message.id'])).toContain(
        `+${String(parent!.attributes['conveyor.producer'])}+`,
      );
      expect(a.endMs).toBeLessThanOrEqual(joinedAt);
      expect(Number(a.attributes['conveyor.job.wait_ms'])).toBeGreaterThanOrEqual(0);
    }
    const ofJob = (suffix: string) =>
      attempts
        .filter((a) => String(a.attributes['messaging.message.id']).endsWith(suffix))
        .sort(
          (x, y) =>
            Number(x.attributes['conveyor.job.attempt']) - Number(y.attributes['conveyor.job.attempt']),
        );
    expect(new Set(attempts.map((a) => a.attributes['messaging.message.id'])).size).toBe(8);
    expect(attempts).toHaveLength(10);
    // The retry: two attempts under the same put batch.
    const retried = ofJob('+p1+0');
    expect(
      retried.map((a) => [a.attributes['conveyor.job.attempt'], a.attributes['conveyor.job.outcome']]),
    ).toEqual([
      [1, 'retried'],
      [2, 'completed'],
    ]);
    expect(retried[0]!.parentSpanId).toBe(retried[1]!.parentSpanId);
    // The timeout: an event on the attempt it ended, then a retry.
    const timedOut = ofJob('+p2+2');
    expect(timedOut.map((a) => a.attributes['conveyor.job.outcome'])).toEqual(['retried', 'completed']);
    expect(timedOut[0]!.events.map((e) => e.name)).toContain('timeout');
    // The cancel: an event on the attempt it ended.
    const [cancelled] = ofJob('+p2+1');
    expect(cancelled!.attributes['conveyor.job.outcome']).toBe('cancelled');
    expect(cancelled!.events.map((e) => e.name)).toContain('cancel');

    // The join callback: after the join, under the run and linked to it.
    const callback = trace.find((s) => s.name === 'conveyor.callback on-join');
    expect(callback, tree).toBeDefined();
    expect(callback!.parentSpanId).toBe(runSpan.spanId);
    expect(callback!.links).toEqual([
      { traceId: runSpan.traceId, spanId: runSpan.spanId, attributes: { 'conveyor.link': 'run' } },
    ]);
    expect(callback!.startMs).toBeGreaterThanOrEqual(joinedAt);

    // Producers' spans came from producers, attempts from consumers.
    expect(new Set(puts.map((s: ReceivedSpan) => s.service))).toEqual(new Set(['conveyor-producer']));
    expect(new Set(attempts.map((s) => s.service))).toEqual(new Set(['conveyor-consumer']));
  }, 60_000);
});
