import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/config.js';
import { loadTracingConfig } from '../../shared/tracing/config.js';
import {
  fromJobMetadata,
  fromTraceparent,
  toJobMetadata,
  toTraceparent,
} from '../../shared/tracing/traceparent.js';

const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' };

describe('tracing configuration (the OpenTelemetry variables)', () => {
  it('is off without an OTLP endpoint, and when the standard switches say so', () => {
    expect(loadTracingConfig({}, 'svc')).toBeNull();
    expect(loadTracingConfig({ ...endpoint, OTEL_SDK_DISABLED: 'true' }, 'svc')).toBeNull();
    expect(loadTracingConfig({ ...endpoint, OTEL_TRACES_EXPORTER: 'none' }, 'svc')).toBeNull();
  });

  it('is on with an endpoint: the spec defaults, or the service name and sampler given', () => {
    expect(loadTracingConfig(endpoint, 'conveyor-consumer')).toEqual({
      serviceName: 'conveyor-consumer',
      sampler: 'parentbased_always_on',
      ratio: 1,
      protocol: 'http/protobuf',
    });
    expect(
      loadTracingConfig(
        {
          OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://c/v1/traces',
          OTEL_SERVICE_NAME: 'resize',
          OTEL_TRACES_SAMPLER: 'parentbased_traceidratio',
          OTEL_TRACES_SAMPLER_ARG: '0.25',
          OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
        },
        'svc',
      ),
    ).toEqual({
      serviceName: 'resize',
      sampler: 'parentbased_traceidratio',
      ratio: 0.25,
      protocol: 'http/json',
    });
  });

  it.each([
    [{ OTEL_TRACES_SAMPLER: 'sometimes' }, 'OTEL_TRACES_SAMPLER: "sometimes"'],
    [{ OTEL_TRACES_SAMPLER_ARG: '2' }, 'OTEL_TRACES_SAMPLER_ARG: "2" is not a number from 0 to 1'],
    [{ OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }, 'OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" is not supported'],
    [{ OTEL_TRACES_EXPORTER: 'zipkin' }, 'OTEL_TRACES_EXPORTER: "zipkin" is not supported'],
    [
      { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' },
      'OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" is not an http(s) URL',
    ],
  ])('refuses %o, naming the variable', (bad, message) => {
    expect(() => loadTracingConfig({ ...endpoint, ...bad }, 'svc')).toThrow(ConfigError);
    expect(() => loadTracingConfig({ ...endpoint, ...bad }, 'svc')).toThrow(message);
  });
});

describe('context in W3C traceparent form', () => {
  const sc = { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', traceFlags: 1 };

  it('round-trips through the job metadata BullMQ stores as `tm`', () => {
    expect(toTraceparent(sc)).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(JSON.parse(toJobMetadata(sc))).toEqual({ traceparent: toTraceparent(sc) });
    expect(fromJobMetadata(toJobMetadata(sc))).toEqual({ ...sc, isRemote: true });
  });

  it('ignores malformed or all-zero values', () => {
    for (const bad of [
      undefined,
      '',
      'x',
      '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331',
      `00-${'0'.repeat(32)}-b7ad6b7169203331-01`,
    ])
      expect(fromTraceparent(bad)).toBeNull();
    expect(fromJobMetadata('{not json')).toBeNull();
  });
});
