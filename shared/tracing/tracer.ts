import { trace, type Tracer } from '@opentelemetry/api';

let on = false;

/**
 * True while this process exports traces (startTracing ran). Every hook checks it first, so with
 * tracing off a put, a job or a join does no tracing work at all, not even a no-op span.
 */
export function tracingOn(): boolean {
  return on;
}

/** @internal startTracing's switch. */
export function setTracingOn(value: boolean): void {
  on = value;
}

/** conveyor's tracer (from the global provider startTracing registered). */
export function tracer(): Tracer {
  return trace.getTracer('conveyor');
}

type Ids = { traceId: string; spanId: string };
let preset: Ids | null = null;

/**
 * Runs `fn` (which must start exactly one span, synchronously) with the ids that span gets chosen
 * in advance. A run's span is started by its creator and ended by whichever process joins it, in
 * another process, maybe hours later: the creator picks and stores its ids, the joiner emits the
 * span with them, so every span that named the run as parent finds it.
 */
export function withPresetIds<T>(ids: Ids, fn: () => T): T {
  preset = ids;
  try {
    return fn();
  } finally {
    preset = null;
  }
}

/** The SDK's id generator, made to hand out preset ids inside withPresetIds. */
export function presetIdGenerator(random: { generateTraceId(): string; generateSpanId(): string }): {
  generateTraceId(): string;
  generateSpanId(): string;
} {
  return {
    generateTraceId: () => preset?.traceId ?? random.generateTraceId(),
    generateSpanId: () => preset?.spanId ?? random.generateSpanId(),
  };
}
