import { Readable } from 'node:stream';
import {
  getMetricsFromStream,
  type PromData,
  type PromHistogramData,
  type PromMetrics,
} from 'prom2javascript';

export type { PromMetrics };

/**
 * Parses Prometheus text exposition format. prom2javascript reads numbers and +Inf only, so samples
 * whose value is NaN or -Inf (prom-client's event-loop gauges before their first sample) are left out.
 */
export function parseMetrics(text: string): Promise<PromMetrics> {
  const readable = text
    .split('\n')
    .filter((line) => !/\s(nan|-inf)(\s+-?\d+)?\s*$/i.test(line))
    .join('\n');
  return getMetricsFromStream(Readable.from([readable]));
}

/** Fetches and parses a `/metrics` endpoint; fails on anything but 200. */
export async function scrape(url: string): Promise<PromMetrics> {
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`${url} answered ${res.status}: ${await res.text()}`);
  return parseMetrics(await res.text());
}

const matches = (labels: Record<string, string>, want: Record<string, string>) =>
  Object.entries(want).every(([k, v]) => labels[k] === v);

function metric(metrics: PromMetrics, name: string) {
  const m = metrics[name];
  if (!m) throw new Error(`no metric ${name} in: ${Object.keys(metrics).join(', ')}`);
  return m;
}

/** The metric's type as exposed (counter, gauge, histogram...). */
export function typeOf(metrics: PromMetrics, name: string): string {
  return metric(metrics, name).type;
}

/** All series of a counter or gauge with (at least) these labels. */
export function series(metrics: PromMetrics, name: string, labels: Record<string, string> = {}): PromData[] {
  return (metric(metrics, name).data as PromData[]).filter((d) => matches(d.labels, labels));
}

/** The value of the one counter or gauge series with (at least) these labels; throws unless exactly one. */
export function value(metrics: PromMetrics, name: string, labels: Record<string, string> = {}): number {
  const found = series(metrics, name, labels);
  if (found.length !== 1)
    throw new Error(`${found.length} ${name} series with ${JSON.stringify(labels)}, expected 1`);
  return found[0]!.value;
}

/** The one histogram series with (at least) these labels. */
export function histogram(
  metrics: PromMetrics,
  name: string,
  labels: Record<string, string> = {},
): PromHistogramData {
  const m = metric(metrics, name);
  if (m.type !== 'histogram') throw new Error(`${name} is a ${m.type}, not a histogram`);
  const found = (m.data as PromHistogramData[]).filter((d) => matches(d.labels, labels));
  if (found.length !== 1)
    throw new Error(`${found.length} ${name} series with ${JSON.stringify(labels)}, expected 1`);
  return found[0]!;
}
