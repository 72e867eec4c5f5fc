import { bool, int, text } from '../config.js';

/** The metrics variables producers and consumers accept (spread into their config shapes). */
export const metricsShape = {
  /** Port of this process's `/metrics`; 0 lets the OS pick a free one (logged at start-up). */
  METRICS_PORT: int(9464, 0, 65_535),
  /** Address `/metrics` listens on; all interfaces by default so Prometheus can reach a container. */
  METRICS_HOST: text('0.0.0.0'),
  METRICS_ENABLED: bool(true),
  /**
   * How long to keep serving `/metrics` after the work is done, before exiting, so the last scrape
   * sees the final counters. 0 = exit at once. A signal ends the wait early.
   */
  METRICS_LINGER_MS: int(0, 0, 3_600_000),
};

export type MetricsConfig = { enabled: boolean; port: number; host: string; lingerMs: number };

export function toMetricsConfig(e: {
  METRICS_PORT: number;
  METRICS_HOST: string;
  METRICS_ENABLED: boolean;
  METRICS_LINGER_MS: number;
}): MetricsConfig {
  return {
    enabled: e.METRICS_ENABLED,
    port: e.METRICS_PORT,
    host: e.METRICS_HOST.trim() || '0.0.0.0',
    lingerMs: e.METRICS_LINGER_MS,
  };
}
