import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One span as OTLP/HTTP JSON carries it, flattened (ids in hex, times in ms). */
export type ReceivedSpan = {
  service: string;
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  startMs: number;
  endMs: number;
  attributes: Record<string, string | number | boolean>;
  events: { name: string; attributes: Record<string, string | number | boolean> }[];
  links: { traceId: string; spanId: string; attributes: Record<string, string | number | boolean> }[];
};

type OtlpValue = {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
};
type OtlpAttr = { key: string; value: OtlpValue };
type OtlpSpan = {
  name: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  startTimeUnixNano: string;
  endTimeUnixNano: string;
  attributes?: OtlpAttr[];
  events?: { name: string; attributes?: OtlpAttr[] }[];
  links?: { traceId: string; spanId: string; attributes?: OtlpAttr[] }[];
};
type OtlpRequest = {
  resourceSpans?: { resource?: { attributes?: OtlpAttr[] }; scopeSpans?: { spans?: OtlpSpan[] }[] }[];
};

const attrs = (list: OtlpAttr[] | undefined): Record<string, string | number | boolean> =>
  Object.fromEntries(
    (list ?? []).map(({ key, value }) => [
      key,
      value.stringValue ??
        (value.intValue !== undefined ? Number(value.intValue) : undefined) ??
        value.boolValue ??
        value.doubleValue ??
        '',
    ]),
  );

/** An OTLP/HTTP JSON trace receiver (what a collector's otlp receiver does, and nothing else). */
export async function startOtlpReceiver(): Promise<{
  endpoint: string;
  spans: ReceivedSpan[];
  close(): Promise<void>;
}> {
  const spans: ReceivedSpan[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (
        req.method !== 'POST' ||
        req.url !== '/v1/traces' ||
        !req.headers['content-type']?.includes('json')
      ) {
        res.writeHead(415).end();
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString()) as OtlpRequest;
      for (const rs of body.resourceSpans ?? []) {
        const service = String(attrs(rs.resource?.attributes)['service.name'] ?? '');
        for (const ss of rs.scopeSpans ?? [])
          for (const s of ss.spans ?? [])
            spans.push({
              service,
              name: s.name,
              traceId: s.traceId,
              spanId: s.spanId,
              parentSpanId: s.parentSpanId ?? '',
              startMs: Number(BigInt(s.startTimeUnixNano) / 1_000_000n),
              endMs: Number(BigInt(s.endTimeUnixNano) / 1_000_000n),
              attributes: attrs(s.attributes),
              events: (s.events ?? []).map((e) => ({ name: e.name, attributes: attrs(e.attributes) })),
              links: (s.links ?? []).map((l) => ({
                traceId: l.traceId,
                spanId: l.spanId,
                attributes: attrs(l.attributes),
              })),
            });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    spans,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** The spans of one trace as an indented tree (children by start time), for a report or a failure. */
export function renderTree(spans: readonly ReceivedSpan[], rootId: string): string {
  const lines: string[] = [];
  const root = spans.find((s) => s.spanId === rootId);
  const t0 = root?.startMs ?? 0;
  const walk = (id: string, depth: number) => {
    const s = spans.find((x) => x.spanId === id);
    if (!s) return;
    const a = s.attributes;
    const detail = [
      a['conveyor.producer'] && `producer ${String(a['conveyor.producer'])}`,
      a['messaging.batch.message_count'] !== undefined &&
        `${String(a['messaging.batch.message_count'])} jobs`,
      a['messaging.message.id'] && `job ${String(a['messaging.message.id'])}`,
      a['conveyor.job.attempt'] !== undefined && `attempt ${String(a['conveyor.job.attempt'])}`,
      a['conveyor.job.outcome'] && String(a['conveyor.job.outcome']),
      ...s.events.map((e) => `event:${e.name}`),
      s.links.length > 0 && `links:${s.links.length}`,
    ].filter(Boolean);
    lines.push(
      `${'  '.repeat(depth)}${s.name} [${s.service}] +${s.startMs - t0}..${s.endMs - t0} ms${detail.length ? ` (${detail.join(', ')})` : ''}`,
    );
    spans
      .filter((c) => c.parentSpanId === id)
      .sort((x, y) => x.startMs - y.startMs)
      .forEach((c) => walk(c.spanId, depth + 1));
  };
  walk(rootId, 0);
  return lines.join('\n');
}
