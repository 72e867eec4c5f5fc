import { context, SpanKind, trace, TraceFlags, type Link, type SpanContext } from '@opentelemetry/api';
import type { RedisClient } from '../redis.js';
import { fromTraceparent, toJobMetadata, toTraceparent } from './traceparent.js';
import { tracer, tracingOn, withPresetIds } from './tracer.js';

/** What the run's trace hooks need of a RunStore (structural, so this floor imports none of it). */
export type TracedRun = {
  readonly client: RedisClient;
  readonly queue: string;
  readonly runId: string;
  readonly keys: { readonly meta: string };
};

type StoredTrace = { traceparent: string; link?: string };

/**
 * The run's trace lives in its meta hash under a field named by its creation (`trace:<run>+<n>`),
 * so a run id used again starts a new trace even where old fields remain.
 */
const traceField = (idPrefix: string) => `trace:${idPrefix}`;

const contexts = new WeakMap<TracedRun, Promise<SpanContext | null>>();

function parseStored(
  value: string | null | undefined,
): { run: SpanContext; link: SpanContext | null } | null {
  if (!value) return null;
  try {
    const stored = JSON.parse(value) as Partial<StoredTrace>;
    const run = fromTraceparent(stored.traceparent);
    return run ? { run, link: fromTraceparent(stored.link) } : null;
  } catch {
    return null;
  }
}

/**
 * At the run's creation (every producer calls create; the first store wins): picks the run's trace
 * and span ids with this process's sampler, stores them with the run, and remembers the winner's
 * for this RunStore. `previousMeta`: the meta key of the run this one follows (a chained run),
 * whose span the new run links to; without it, the span active here (a callback's attempt, when
 * a callback opens the next run) is linked instead.
 */
export async function openRunTrace(
  run: TracedRun,
  idPrefix: string,
  previousMeta: string | null,
): Promise<void> {
  const opening = (async () => {
    const link = previousMeta ? await readRunContext(run.client, previousMeta) : activeSpanContext();
    // A sampling decision and fresh ids; this span is never ended: the process that joins the run
    // emits the run's span with these ids (endRunSpan).
    const sc = tracer().startSpan('conveyor.run', { root: true }).spanContext();
    const value: StoredTrace = {
      traceparent: toTraceparent(sc),
      ...(link ? { link: toTraceparent(link) } : {}),
    };
    await run.client.hsetnx(run.keys.meta, traceField(idPrefix), JSON.stringify(value));
    return parseStored(await run.client.hget(run.keys.meta, traceField(idPrefix)))?.run ?? null;
  })().catch(() => null); // tracing never fails the run: its puts are then traced without a parent
  contexts.set(run, opening);
  await opening;
}

function activeSpanContext(): SpanContext | null {
  const sc = trace.getSpanContext(context.active());
  return sc && trace.isSpanContextValid(sc) ? sc : null;
}

/** The run's span context (what its puts and callbacks hang under); read once per RunStore. */
export function runContext(run: TracedRun): Promise<SpanContext | null> {
  let known = contexts.get(run);
  if (!known) {
    known = readRunContext(run.client, run.keys.meta).catch(() => null);
    contexts.set(run, known);
  }
  return known;
}

async function readRunContext(redis: RedisClient, metaKey: string): Promise<SpanContext | null> {
  const idPrefix = await redis.hget(metaKey, 'idPrefix');
  return idPrefix ? (parseStored(await redis.hget(metaKey, traceField(idPrefix)))?.run ?? null) : null;
}

/**
 * Emits the run's span, from its creation to its join, by the one process whose call joined the
 * run (the join script says `joined-now` exactly once). Its ids are the ones its creator stored,
 * its times Redis's (createdAt, joinedAt), its attributes the final totals.
 */
export async function endRunSpan(run: TracedRun): Promise<void> {
  const meta = await run.client.hgetall(run.keys.meta);
  const stored = parseStored(meta.idPrefix ? meta[traceField(meta.idPrefix)] : undefined);
  if (!stored || !(stored.run.traceFlags & TraceFlags.SAMPLED)) return;
  const totals = parseTotals(meta.totalsAtJoin);
  const links: Link[] = stored.link
    ? [{ context: stored.link, attributes: { 'conveyor.link': 'previous-run' } }]
    : [];
  const { traceId, spanId } = stored.run;
  const span = withPresetIds({ traceId, spanId }, () =>
    tracer().startSpan('conveyor.run', {
      root: true,
      kind: SpanKind.INTERNAL,
      startTime: Number(meta.createdAt) || Date.now(),
      links,
      attributes: {
        'conveyor.run.id': run.runId,
        'messaging.destination.name': run.queue,
        'conveyor.run.cancelled': meta.cancelledAt !== undefined,
        ...Object.fromEntries(Object.entries(totals).map(([k, v]) => [`conveyor.run.${k}`, v])),
      },
    }),
  );
  // A tracer provider other than conveyor's ignores the preset ids: such a span would name no
  // one's parent, so it is not exported at all.
  if (span.spanContext().spanId !== spanId) return;
  span.end(Number(meta.joinedAt) || Date.now());
}

function parseTotals(json: string | undefined): Record<string, number> {
  try {
    const t = JSON.parse(json ?? '{}') as Record<string, unknown>;
    return Object.fromEntries(
      Object.entries(t)
        .filter(([, v]) => typeof v === 'number')
        .map(([k, v]) => [k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`), v as number]),
    );
  } catch {
    return {};
  }
}

/**
 * BullMQ job options that put a job under the run's span (a join callback: it belongs to the run
 * but runs after its join); none when tracing is off or the run has no trace.
 */
export async function underRun(run: TracedRun): Promise<{ telemetry?: { metadata: string } }> {
  if (!tracingOn()) return {};
  const sc = await runContext(run);
  return sc ? { telemetry: { metadata: toJobMetadata(sc) } } : {};
}
