import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../shared/logger.js';
import { startMetricsServer, type MetricsServer } from '../../shared/metrics/metrics-server.js';
import { startProcessEndpoint } from '../../shared/metrics/process-endpoint.js';
import {
  createConsumerMetrics,
  createProducerMetrics,
  registerDefaultMetrics,
  SECONDS_BUCKETS,
} from '../../shared/metrics/process-metrics.js';
import { promtool } from '../helpers/prometheus-server.js';
import { histogram, parseMetrics, scrape, typeOf, value } from '../helpers/prometheus-text.js';

const servers: MetricsServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(registry: Registry): Promise<MetricsServer> {
  const server = await startMetricsServer({ registry, port: 0, host: '127.0.0.1' });
  servers.push(server);
  return server;
}

describe('process metrics', () => {
  it('counts a consumer’s jobs and times them in buckets that resolve milliseconds and minutes', async () => {
    const registry = new Registry();
    registerDefaultMetrics(registry, 'consumer');
    const m = createConsumerMetrics(registry, 'q1');
    m.jobStarted({ waitMs: 0.4 });
    m.jobStarted({ waitMs: 3 });
    m.jobStarted({ waitMs: 90_000 });
    m.jobFinished({ outcome: 'completed', durationMs: 2 });
    m.jobFinished({ outcome: 'completed', durationMs: 45_000 });
    m.jobRetried();
    m.jobFinished({ outcome: 'failed', durationMs: 1_500_000 });

    const server = await serve(registry);
    const metrics = await scrape(server.url);
    expect(typeOf(metrics, 'conveyor_jobs_completed_total')).toBe('counter');
    expect(value(metrics, 'conveyor_jobs_completed_total', { queue: 'q1', service: 'consumer' })).toBe(2);
    expect(value(metrics, 'conveyor_jobs_failed_total', { queue: 'q1' })).toBe(1);
    expect(value(metrics, 'conveyor_jobs_retried_total', { queue: 'q1' })).toBe(1);

    const wait = histogram(metrics, 'conveyor_job_wait_seconds', { queue: 'q1', service: 'consumer' });
    expect(wait.count).toBe(3);
    expect(wait.buckets['0.001']).toBe(1); // 0.4 ms
    expect(wait.buckets['0.005']).toBe(2); // 3 ms
    expect(wait.buckets['60']).toBe(2);
    expect(wait.buckets['120']).toBe(3); // 90 s
    const duration = histogram(metrics, 'conveyor_job_duration_seconds', { queue: 'q1' });
    expect(duration.count).toBe(3);
    expect(duration.sum).toBeCloseTo(0.002 + 45 + 1500, 6);
    expect(duration.buckets['0.0025']).toBe(1);
    expect(duration.buckets['30']).toBe(1);
    expect(duration.buckets['60']).toBe(2);
    expect(duration.buckets['1800']).toBe(3); // 25 min
    expect(Object.keys(duration.buckets)).toHaveLength(SECONDS_BUCKETS.length + 1);

    // Node's process metrics ride along, every series labelled with the service.
    expect(typeOf(metrics, 'process_cpu_seconds_total')).toBe('counter');
    expect(value(metrics, 'process_cpu_seconds_total', { service: 'consumer' })).toBeGreaterThan(0);
    expect(metrics.nodejs_eventloop_lag_seconds).toBeDefined();
  });

  it('exposes series at zero before anything happens, so rates start from a known value', async () => {
    const registry = new Registry();
    createProducerMetrics(registry, 'q2');
    createConsumerMetrics(registry, 'q2');
    const metrics = await parseMetrics(await registry.metrics());
    expect(value(metrics, 'conveyor_jobs_produced_total', { queue: 'q2' })).toBe(0);
    expect(value(metrics, 'conveyor_jobs_completed_total', { queue: 'q2' })).toBe(0);
    expect(histogram(metrics, 'conveyor_job_wait_seconds', { queue: 'q2' }).count).toBe(0);
  });

  it('counts produced jobs', async () => {
    const registry = new Registry();
    const m = createProducerMetrics(registry, 'q3');
    m.jobsProduced(5);
    m.jobsProduced(0);
    m.jobsProduced(2);
    const metrics = await parseMetrics(await registry.metrics());
    expect(typeOf(metrics, 'conveyor_jobs_produced_total')).toBe('counter');
    expect(value(metrics, 'conveyor_jobs_produced_total', { queue: 'q3' })).toBe(7);
  });

  it('passes promtool’s metric lint (naming, units, help)', async () => {
    // Only conveyor's own metrics: prom-client's defaults include gauges named *_total.
    const registry = new Registry();
    createProducerMetrics(registry, 'q4');
    createConsumerMetrics(registry, 'q4').jobStarted({ waitMs: 1 });
    const lint = promtool(['check', 'metrics'], await registry.metrics());
    expect(lint.output).toBe('');
    expect(lint.code).toBe(0);
  });
});

describe('metrics server', () => {
  it('serves /metrics only, on the port the OS picked, and closes twice safely', async () => {
    const registry = new Registry();
    createProducerMetrics(registry, 'q5');
    const server = await serve(registry);
    expect(server.port).toBeGreaterThan(0);
    const ok = await fetch(server.url);
    expect(ok.status).toBe(200);
    expect(ok.headers.get('content-type')).toContain('text/plain');
    expect(await ok.text()).toContain('conveyor_jobs_produced_total{queue="q5"} 0');
    const other = await fetch(`http://127.0.0.1:${server.port}/`);
    expect(other.status).toBe(404);
    await other.text();
    await server.close();
    await server.close();
    await expect(fetch(server.url)).rejects.toThrow();
  });

  it('answers 500 with the reason when collecting fails', async () => {
    const registry = new Registry();
    const { Gauge } = await import('prom-client');
    new Gauge({
      name: 'broken',
      help: 'always fails',
      registers: [registry],
      collect() {
        throw new Error('redis went away');
      },
    });
    const server = await serve(registry);
    const res = await fetch(server.url);
    expect(res.status).toBe(500);
    expect(await res.text()).toContain('redis went away');
  });

  it('rejects when the port is taken', async () => {
    const first = await serve(new Registry());
    await expect(
      startMetricsServer({ registry: new Registry(), port: first.port, host: '127.0.0.1' }),
    ).rejects.toThrow(/EADDRINUSE/);
  });
});

describe('a process’s metrics endpoint', () => {
  const log = createLogger({ level: 'silent', service: 'test' });
  const base = { enabled: true, host: '127.0.0.1', lingerMs: 0 };

  it('answers the probes: /healthz always, /readyz only while the process says it is ready', async () => {
    const endpoint = await startProcessEndpoint({ ...base, port: 0, portIsDefault: false }, 'consumer', log);
    const status = async (path: string) => (await fetch(`http://127.0.0.1:${endpoint.port}${path}`)).status;
    try {
      expect([await status('/healthz'), await status('/readyz')]).toEqual([200, 503]);
      endpoint.setReady(true);
      expect([await status('/healthz'), await status('/readyz')]).toEqual([200, 200]);
      endpoint.setReady(false);
      expect([await status('/healthz'), await status('/readyz')]).toEqual([200, 503]);
    } finally {
      await endpoint.close();
    }
  });

  it('moves off a taken default port, but never off one that was asked for', async () => {
    const taken = await serve(new Registry());
    const moved = await startProcessEndpoint(
      { ...base, port: taken.port, portIsDefault: true },
      'consumer',
      log,
    );
    const kept = await startProcessEndpoint(
      { ...base, port: taken.port, portIsDefault: false },
      'consumer',
      log,
    );
    try {
      expect(moved.port).not.toBeNull();
      expect(moved.port).not.toBe(taken.port);
      expect(
        (await scrape(`http://127.0.0.1:${moved.port}/metrics`)).process_cpu_seconds_total,
      ).toBeDefined();
      expect(kept.port).toBeNull();
    } finally {
      await moved.close();
      await kept.close();
    }
  });

  it('lingers until its signal aborts, and not at all when disabled', async () => {
    const endpoint = await startProcessEndpoint(
      { ...base, port: 0, portIsDefault: false, lingerMs: 60_000 },
      'producer',
      log,
    );
    const stop = new AbortController();
    const lingering = endpoint.linger(stop.signal);
    expect((await fetch(`http://127.0.0.1:${endpoint.port}/metrics`)).status).toBe(200);
    stop.abort();
    await lingering;
    await endpoint.close();
    const off = await startProcessEndpoint(
      { ...base, enabled: false, port: 0, portIsDefault: false, lingerMs: 60_000 },
      'producer',
      log,
    );
    expect(off.port).toBeNull();
    await off.linger(new AbortController().signal);
    await off.close();
  });
});
