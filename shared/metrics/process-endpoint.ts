import { setTimeout as sleep } from 'node:timers/promises';
import { Registry } from 'prom-client';
import type { Logger } from '../logger.js';
import type { MetricsConfig } from './config.js';
import { startMetricsServer, type MetricsServer } from './metrics-server.js';
import { registerDefaultMetrics, type Service } from './process-metrics.js';

export type ProcessEndpoint = {
  /** This process's registry: default process metrics already on it, labelled `service`. */
  registry: Registry;
  /** The bound port, or null when disabled or the port could not be bound. */
  port: number | null;
  /** What `/readyz` answers: false (503) until set, and again once the process starts stopping. */
  setReady(ready: boolean): void;
  /** Keeps serving for `lingerMs` (ends early when `signal` aborts), so the last scrape sees final values. */
  linger(signal: AbortSignal): Promise<void>;
  close(): Promise<void>;
};

/**
 * A producer's or consumer's `/metrics`: a fresh registry and its HTTP endpoint. A port that cannot be
 * bound is logged, not fatal: the process still does its work, and Prometheus shows the target down.
 */
export async function startProcessEndpoint(
  config: MetricsConfig,
  service: Service,
  log: Logger,
): Promise<ProcessEndpoint> {
  const registry = new Registry();
  registerDefaultMetrics(registry, service);
  let server: MetricsServer | null = null;
  let ready = false;
  if (config.enabled) {
    try {
      server = await listen(registry, config, () => ready);
      const moved = config.port !== 0 && server.port !== config.port;
      log.info(
        { metricsPort: server.port, metricsUrl: server.url },
        moved
          ? `serving metrics (port ${config.port} was taken; set METRICS_PORT to choose)`
          : 'serving metrics',
      );
    } catch (err) {
      log.error(
        { err: err instanceof Error ? err.message : String(err), metricsPort: config.port },
        `could not serve metrics on ${config.host}:${config.port}; set METRICS_PORT to a free port (0: any free port) ` +
          'or METRICS_ENABLED=false. Carrying on without /metrics.',
      );
    }
  }
  return {
    registry,
    port: server?.port ?? null,
    setReady: (value) => {
      ready = value;
    },
    linger: async (signal) => {
      if (!server || config.lingerMs === 0 || signal.aborted) return;
      log.info({ lingerMs: config.lingerMs }, 'work done; serving final metrics before exiting');
      await sleep(config.lingerMs, undefined, { signal }).catch(() => undefined);
    },
    close: async () => {
      await server?.close();
    },
  };
}

/**
 * Binds the configured port. When METRICS_PORT was left unset and 9464 is taken (several processes on
 * one host, outside containers), a free port is used instead and logged; a port that was asked for
 * explicitly is never swapped.
 */
async function listen(
  registry: Registry,
  config: MetricsConfig,
  ready: () => boolean,
): Promise<MetricsServer> {
  try {
    return await startMetricsServer({ registry, port: config.port, host: config.host, ready });
  } catch (err) {
    if (!config.portIsDefault || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
    return startMetricsServer({ registry, port: 0, host: config.host, ready });
  }
}
