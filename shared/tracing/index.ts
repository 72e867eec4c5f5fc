import type { Logger } from '../logger.js';
import { loadTracingConfig } from './config.js';
import { startTracing, type Tracing } from './start-tracing.js';

export type { Tracing } from './start-tracing.js';

const OFF: Tracing = { shutdown: () => Promise.resolve() };

/**
 * Tracing the OpenTelemetry way: on when `env` names an OTLP endpoint (see loadTracingConfig),
 * else a no-op. Throws ConfigError, naming the variable, on a bad value or a missing SDK.
 */
export async function startTracingFromEnv(
  env: Readonly<Record<string, string | undefined>>,
  defaultServiceName: string,
  log: Logger,
): Promise<Tracing> {
  const config = loadTracingConfig(env, defaultServiceName);
  return config ? startTracing(config, log) : OFF;
}
