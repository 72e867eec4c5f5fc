import type { Env } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { createLogger } from '../shared/logger.js';
import { startTracingFromEnv, type Tracing } from '../shared/tracing/index.js';

export type TracingOptions = {
  /** Where the OTEL_* variables are read; pass `process.env` (nothing is read unless given). */
  env: Env;
  /** service.name when OTEL_SERVICE_NAME is unset. Default `conveyor`. */
  serviceName?: string;
  log?: Logger;
};

/**
 * Switches on conveyor's tracing in this process when `env` names an OTLP endpoint (the standard
 * OpenTelemetry variables, docs/tracing.md): loads the SDK and exporter, registers them globally, and
 * returns a handle whose `shutdown()` flushes the last spans (call it before exiting). Without an
 * endpoint it does nothing and loads nothing. Call it once, before opening producers or consumers.
 */
export function startTracing(opts: TracingOptions): Promise<Tracing> {
  return startTracingFromEnv(
    opts.env,
    opts.serviceName ?? 'conveyor',
    opts.log ?? createLogger({ level: 'warn', service: 'tracing' }),
  );
}
