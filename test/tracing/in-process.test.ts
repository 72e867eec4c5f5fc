import { Worker } from 'bullmq';
import { BullMQOtel } from 'bullmq-otel';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProducer } from '../../producers/producer.js';
import { loadJobRegistry } from '../../shared/jobs/index.js';
import { queueShards, runKeys } from '../../shared/keys.js';
import { createLogger } from '../../shared/logger.js';
import { jobOptions } from '../../shared/queue.js';
import { projectRoot } from '../../shared/roles.js';
import { RunStore } from '../../shared/run/run-store.js';
import { startTracing, type Tracing } from '../../shared/tracing/start-tracing.js';
import { startOtlpReceiver } from '../helpers/otlp-receiver.js';
import { pollUntil } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

describe('tracing in one process (the SDK on, exporting to a receiver in the test)', () => {
  const ctx = useTestQueue();
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
  let tracing: Tracing;
  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    // The exporter reads its endpoint from the environment, as in a real process.
    process.env.OTEL_EXPORTER_OTLP_ENDPOINT = receiver.endpoint;
    tracing = await startTracing(
      { serviceName: 'test', sampler: 'parentbased_always_on', ratio: 1, protocol: 'http/json' },
      createLogger({ level: 'silent', service: 'test', pretty: false }),
    );
  });
  afterAll(async () => {
    await tracing.shutdown();
    delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
    await receiver.close();
  });

  /** Creates a run with one producer, reports it done with nothing put: the run joins. */
  const emptyRun = async (runId: string, afterRun = '') => {
    const run = new RunStore(ctx.redis, ctx.queue, runId);
    await run.create(1, 10_000, 60_000, [], afterRun);
    await run.registerProducer('p', { host: 'test', pid: 1 }, 10_000);
    expect((await run.producerDone('p', [0], 1)).join.joinedNow).toBe(true);
  };

  it('a chained run links to the run before it', async () => {
    await emptyRun('first');
    await emptyRun('second', 'first');
    const [first, second] = await pollUntil('both run spans', () => {
      const runs = ['first', 'second'].map((id) =>
        receiver.spans.find((s) => s.name === 'conveyor.run' && s.attributes['conveyor.run.id'] === id),
      );
      return Promise.resolve(runs.every(Boolean) ? runs : undefined);
    });
    expect(first!.links).toEqual([]);
    expect(second!.links).toEqual([
      { traceId: first!.traceId, spanId: first!.spanId, attributes: { 'conveyor.link': 'previous-run' } },
    ]);
    expect(second!.traceId).not.toBe(first!.traceId);
  });

  it('a plain BullMQ worker with bullmq-otel continues the trace of a job conveyor put', async () => {
    const run = new RunStore(ctx.redis, ctx.queue, 'plain');
    await run.create(1, 10_000);
    const { instance, idPrefix } = await run.registerProducer('p', { host: 'test', pid: 1 }, 10_000);
    const producer = createProducer({
      run,
      registry: await loadJobRegistry([], projectRoot),
      producerId: 'p',
      instance,
      idPrefix,
      jobOptions: jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 100, keepFailed: 100 }),
    });
    const [jobId] = await producer.putMany([{ type: 'sleep', payload: { value: 1, ms: 0 } }]);
    const stored = await ctx.redis.hget(
      `${queueShards(ctx.queue, 1)[0]!.prefix}:${ctx.queue}:${jobId!}`,
      'opts',
    );
    expect(JSON.parse(stored!)).toHaveProperty('tm');

    const shard = queueShards(ctx.queue, 1)[0]!;
    const worker = new Worker(shard.name, () => Promise.resolve('plain'), {
      connection: ctx.redis.duplicate({ maxRetriesPerRequest: null }),
      prefix: shard.prefix,
      telemetry: new BullMQOtel({ tracerName: 'plain-worker' }),
    });
    ctx.cleanups.push(() => worker.close());
    await new Promise<void>((resolve) => worker.on('completed', () => resolve()));

    const put = await pollUntil('the put span', () =>
      Promise.resolve(
        receiver.spans.find((s) => s.name === 'conveyor.put' && s.attributes['conveyor.run.id'] === 'plain'),
      ),
    );
    const processed = await pollUntil('the plain worker’s process span', () =>
      Promise.resolve(receiver.spans.find((s) => s.name.startsWith('process') && s.traceId === put.traceId)),
    );
    expect(processed.parentSpanId).toBe(put.spanId);
    expect(await ctx.redis.hget(runKeys(ctx.queue, 'plain').meta, 'runId')).toBe('plain');
  });
});
