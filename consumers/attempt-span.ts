import { context, SpanKind, SpanStatusCode, trace, type Link, type Span } from '@opentelemetry/api';
import { UnrecoverableError, type Job } from 'bullmq';
import { readJobData, type JobData } from '../shared/queue.js';
import { fromJobMetadata } from '../shared/tracing/traceparent.js';
import { tracer, tracingOn } from '../shared/tracing/tracer.js';
import { isCancelReason, isTimeoutReason } from './job-control.js';

type Processor = (job: Job<JobData>) => Promise<unknown>;

/**
 * Each attempt of a job as a span, child of the context the job carries (its put batch's span,
 * or its run's for a join callback), with the handler running inside it so spans it makes and a
 * run it opens nest under it. With tracing off the processor runs as it is.
 */
export function traceAttempts(queue: string, processor: Processor): Processor {
  return (job) => (tracingOn() ? attempt(queue, job, processor) : processor(job));
}

async function attempt(queue: string, job: Job<JobData>, processor: Processor): Promise<unknown> {
  const parent = fromJobMetadata(job.opts.telemetry?.metadata);
  const data = readJobData(job.data);
  const callback = data?.afterRun && data.callback ? data.callback : undefined;
  const links: Link[] =
    callback && parent ? [{ context: parent, attributes: { 'conveyor.link': 'run' } }] : [];
  const startedAt = Date.now();
  const span = tracer().startSpan(
    callback ? `conveyor.callback ${callback}` : `conveyor.job ${job.name}`,
    {
      kind: SpanKind.CONSUMER,
      links,
      startTime: startedAt,
      attributes: {
        'messaging.destination.name': queue,
        'messaging.message.id': job.id ?? '',
        'conveyor.job.type': job.name,
        'conveyor.job.attempt': job.attemptsMade + 1,
        // enqueue → this attempt's start (for a retry, that includes the earlier attempts and backoff)
        'conveyor.job.wait_ms': Math.max(0, startedAt - job.timestamp),
        ...(data ? { 'conveyor.run.id': data.afterRun ?? data.run } : {}),
        ...(callback ? { 'conveyor.callback': callback } : {}),
      },
    },
    parent ? trace.setSpanContext(context.active(), parent) : context.active(),
  );
  try {
    const result = await context.with(trace.setSpan(context.active(), span), () => processor(job));
    span.setAttribute('conveyor.job.outcome', 'completed');
    return result;
  } catch (err) {
    recordFailure(span, job, err);
    throw err;
  } finally {
    span.end();
  }
}

/** Outcome of a failed attempt; a cancel and a timeout are also events, stamped when the attempt ends. */
function recordFailure(span: Span, job: Job<JobData>, err: unknown): void {
  const message = err instanceof Error ? err.message : String(err);
  if (isCancelReason(message)) {
    span.addEvent('cancel', { 'conveyor.reason': message });
    span.setAttribute('conveyor.job.outcome', 'cancelled');
    return;
  }
  if (isTimeoutReason(message)) span.addEvent('timeout', { 'conveyor.reason': message });
  const retried = !(err instanceof UnrecoverableError) && job.attemptsMade + 1 < (job.opts.attempts ?? 1);
  span.setAttribute('conveyor.job.outcome', retried ? 'retried' : 'failed');
  if (err instanceof Error) span.recordException(err);
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}
