import { context, propagation, trace } from '@opentelemetry/api';
import { ConfigError } from '../config.js';
import type { Logger } from '../logger.js';
import type { TracingConfig } from './config.js';
import { presetIdGenerator, setTracingOn } from './tracer.js';
// Types only (erased): the packages themselves are imported when tracing starts.
import type * as ContextAsyncHooks from '@opentelemetry/context-async-hooks';
import type * as Core from '@opentelemetry/core';
import type * as OtlpHttp from '@opentelemetry/exporter-trace-otlp-http';
import type * as Resources from '@opentelemetry/resources';
import type * as SdkTrace from '@opentelemetry/sdk-trace';

export type Tracing = {
  /** Flushes the spans not yet exported, then stops tracing. Safe to call twice. */
  shutdown(): Promise<void>;
};

/** How long shutdown waits for the last export before giving up on it. */
const FLUSH_MS = 5_000;

const SDK_PACKAGES = [
  '@opentelemetry/sdk-trace',
  '@opentelemetry/context-async-hooks',
  '@opentelemetry/core',
  '@opentelemetry/resources',
];

/**
 * Switches tracing on: loads the OpenTelemetry SDK and the OTLP exporter (only now: with tracing
 * off they are never imported, and need not be installed), registers a tracer provider, the W3C
 * propagator and an AsyncLocalStorage context manager globally. The exporter reads its endpoint,
 * headers and timeout from the standard OTEL_EXPORTER_OTLP_* variables.
 */
export async function startTracing(config: TracingConfig, log: Logger): Promise<Tracing> {
  const exporterPackage =
    config.protocol === 'http/json'
      ? '@opentelemetry/exporter-trace-otlp-http'
      : '@opentelemetry/exporter-trace-otlp-proto';
  const load = async <T>(name: string): Promise<T> => {
    try {
      return (await import(name)) as T;
    } catch (err) {
      throw new ConfigError([
        `OTEL_EXPORTER_OTLP_ENDPOINT: tracing is on, but ${name} could not be loaded (${(err as Error).message}). ` +
          `Install the SDK beside conveyor: npm install ${[...SDK_PACKAGES, exporterPackage].join(' ')}`,
      ]);
    }
  };
  const sdk = await load<typeof SdkTrace>('@opentelemetry/sdk-trace');
  const hooks = await load<typeof ContextAsyncHooks>('@opentelemetry/context-async-hooks');
  const core = await load<typeof Core>('@opentelemetry/core');
  const resources = await load<typeof Resources>('@opentelemetry/resources');
  const { OTLPTraceExporter } = await load<typeof OtlpHttp>(exporterPackage);

  const ratio = new sdk.TraceIdRatioBasedSampler(config.ratio);
  const root = {
    always_on: new sdk.AlwaysOnSampler(),
    always_off: new sdk.AlwaysOffSampler(),
    traceidratio: ratio,
    parentbased_always_on: new sdk.AlwaysOnSampler(),
    parentbased_always_off: new sdk.AlwaysOffSampler(),
    parentbased_traceidratio: ratio,
  }[config.sampler];
  const sampler = config.sampler.startsWith('parentbased_') ? new sdk.ParentBasedSampler({ root }) : root;
  const provider = new sdk.TracerProvider({
    resource: resources
      .detectResources({ detectors: [resources.envDetector] })
      .merge(resources.resourceFromAttributes({ 'service.name': config.serviceName })),
    sampler,
    idGenerator: presetIdGenerator(new sdk.RandomIdGenerator()),
    spanProcessors: [new sdk.BatchSpanProcessor({ exporter: new OTLPTraceExporter() })],
  });
  const contextManager = new hooks.AsyncLocalStorageContextManager().enable();
  context.setGlobalContextManager(contextManager);
  propagation.setGlobalPropagator(new core.W3CTraceContextPropagator());
  trace.setGlobalTracerProvider(provider);
  setTracingOn(true);
  log.info(
    { serviceName: config.serviceName, sampler: config.sampler, protocol: config.protocol },
    'tracing on: exporting spans over OTLP',
  );
  let stopping: Promise<void> | undefined;
  return {
    shutdown: () =>
      (stopping ??= (async () => {
        setTracingOn(false);
        const timer = new Promise<'timeout'>((resolve) => setTimeout(resolve, FLUSH_MS, 'timeout').unref());
        const outcome = await Promise.race([provider.shutdown().then(() => 'flushed' as const), timer]).catch(
          (err: unknown) => {
            log.warn({ err: String(err) }, 'exporting the last spans failed');
            return 'failed' as const;
          },
        );
        if (outcome === 'timeout')
          log.warn({ afterMs: FLUSH_MS }, 'the last spans were not exported in time');
        trace.disable();
        propagation.disable();
        context.disable();
      })()),
  };
}
