import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { runContext, type TracedRun } from './run-trace.js';
import { toJobMetadata } from './traceparent.js';
import { tracingOn, tracer } from './tracer.js';

/**
 * One put batch as a span under its run. `put` gets the jobs' BullMQ options with the batch's
 * context in them (`tm`, where BullMQ's own add stores it), or the options unchanged when tracing
 * is off: then this is one boolean check per batch.
 */
export async function tracePut<T>(
  run: TracedRun,
  attrs: { shard: number; jobs: number; producer: string },
  options: string,
  put: (options: string) => Promise<T>,
): Promise<T> {
  if (!tracingOn()) return put(options);
  const parent = await runContext(run);
  const span = tracer().startSpan(
    'conveyor.put',
    {
      kind: SpanKind.PRODUCER,
      attributes: {
        'conveyor.run.id': run.runId,
        'messaging.destination.name': run.queue,
        'messaging.batch.message_count': attrs.jobs,
        'conveyor.shard': attrs.shard,
        'conveyor.producer': attrs.producer,
      },
    },
    parent ? trace.setSpanContext(context.active(), parent) : context.active(),
  );
  try {
    const withContext = { ...(JSON.parse(options) as object), tm: toJobMetadata(span.spanContext()) };
    return await put(JSON.stringify(withContext));
  } catch (err) {
    span.recordException(err as Error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: (err as Error).message });
    throw err;
  } finally {
    span.end();
  }
}
