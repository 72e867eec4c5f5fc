import { ConfigError } from '../config.js';

type Env = Readonly<Record<string, string | undefined>>;

/** The samplers OTEL_TRACES_SAMPLER names (the OpenTelemetry spec's list, less the vendor ones). */
export type SamplerName =
  | 'always_on'
  | 'always_off'
  | 'traceidratio'
  | 'parentbased_always_on'
  | 'parentbased_always_off'
  | 'parentbased_traceidratio';

const SAMPLERS: readonly SamplerName[] = [
  'always_on',
  'always_off',
  'traceidratio',
  'parentbased_always_on',
  'parentbased_always_off',
  'parentbased_traceidratio',
];

export type TracingConfig = {
  serviceName: string;
  sampler: SamplerName;
  /** For the traceidratio samplers: the share of new traces kept, 0..1. */
  ratio: number;
  /** OTLP over HTTP, JSON or protobuf (the spec's default). */
  protocol: 'http/json' | 'http/protobuf';
};

/**
 * Reads the standard OpenTelemetry variables. Tracing is on when an OTLP endpoint is set
 * (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and neither
 * `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none` turns it off; null means off. The
 * exporter itself reads the endpoint, headers and timeout variables; this checks the ones it would
 * otherwise ignore or misread, naming the variable.
 */
export function loadTracingConfig(env: Env, defaultServiceName: string): TracingConfig | null {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  if (!endpoint) return null;
  if ((env.OTEL_SDK_DISABLED ?? '').trim().toLowerCase() === 'true') return null;
  const problems: string[] = [];
  const exporter = (env.OTEL_TRACES_EXPORTER ?? 'otlp').trim().toLowerCase();
  if (exporter === 'none') return null;
  if (exporter !== 'otlp')
    problems.push(
      `OTEL_TRACES_EXPORTER: "${exporter}" is not supported (use otlp, or none to switch tracing off)`,
    );
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_ENDPOINT'] as const) {
    const v = env[name];
    if (v && !/^https?:\/\/[^\s]+$/.test(v)) problems.push(`${name}: "${v}" is not an http(s) URL`);
  }
  const sampler = (env.OTEL_TRACES_SAMPLER ?? 'parentbased_always_on').trim().toLowerCase();
  if (!(SAMPLERS as readonly string[]).includes(sampler))
    problems.push(`OTEL_TRACES_SAMPLER: "${sampler}" is not one of ${SAMPLERS.join(', ')}`);
  const arg = env.OTEL_TRACES_SAMPLER_ARG?.trim();
  const ratio = arg === undefined || arg === '' ? 1 : Number(arg);
  if (!(ratio >= 0 && ratio <= 1))
    problems.push(`OTEL_TRACES_SAMPLER_ARG: "${arg}" is not a number from 0 to 1`);
  const protocol = (
    env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL ??
    env.OTEL_EXPORTER_OTLP_PROTOCOL ??
    'http/protobuf'
  )
    .trim()
    .toLowerCase();
  if (protocol !== 'http/json' && protocol !== 'http/protobuf')
    problems.push(
      `OTEL_EXPORTER_OTLP_PROTOCOL: "${protocol}" is not supported (http/protobuf or http/json; for grpc, put a collector in between)`,
    );
  if (problems.length > 0) throw new ConfigError(problems);
  return {
    serviceName: env.OTEL_SERVICE_NAME?.trim() || defaultServiceName,
    sampler: sampler as SamplerName,
    ratio,
    protocol: protocol as TracingConfig['protocol'],
  };
}
