import { isSpanContextValid, TraceFlags, type SpanContext } from '@opentelemetry/api';

/** A span context in W3C `traceparent` form: `00-<trace id>-<span id>-<flags>`. */
export function toTraceparent(sc: SpanContext): string {
  return `00-${sc.traceId}-${sc.spanId}-0${(sc.traceFlags & TraceFlags.SAMPLED).toString(16)}`;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** The remote span context a `traceparent` names; null for anything malformed or all-zero. */
export function fromTraceparent(value: unknown): SpanContext | null {
  if (typeof value !== 'string') return null;
  const m = TRACEPARENT.exec(value.trim());
  if (!m) return null;
  const sc: SpanContext = {
    traceId: m[1]!,
    spanId: m[2]!,
    traceFlags: parseInt(m[3]!, 16) & TraceFlags.SAMPLED,
    isRemote: true,
  };
  return isSpanContextValid(sc) ? sc : null;
}

/**
 * What BullMQ stores as a job's telemetry metadata (its `tm` option) and bullmq-otel reads back:
 * a JSON carrier of W3C headers. Written here without the global propagator, so the job carries
 * `traceparent` whatever propagator the process registered.
 */
export function toJobMetadata(sc: SpanContext): string {
  return JSON.stringify({ traceparent: toTraceparent(sc) });
}

/** The span context in a job's telemetry metadata, if any. */
export function fromJobMetadata(metadata: unknown): SpanContext | null {
  if (typeof metadata !== 'string' || metadata === '') return null;
  try {
    return fromTraceparent((JSON.parse(metadata) as { traceparent?: unknown }).traceparent);
  } catch {
    return null;
  }
}
