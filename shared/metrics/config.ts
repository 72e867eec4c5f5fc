import { bool, int, text } from '../config.js';

/** The metrics variables producers and consumers accept (spread into their config shapes). */
export const metricsShape = {
  /**
   * Port of this process's `/metrics`; 0 lets the OS pick a free one (logged at start-up). Unset means
   * 9464, or a free port when 9464 is taken (several processes on one host); -1 marks "unset".
   */
  METRICS_PORT: int(-1, 0, 65_535),
  /** Address `/metrics` listens on; all interfaces by default so Prometheus can reach a container. */
  METRICS_HOST: text('0.0.0.0'),
  METRICS_ENABLED: bool(true),
  /**
   * How long to keep serving `/metrics` after the work is done, before exiting, so the last scrape
   * sees the final counters. 0 = exit at once. A signal ends the wait early.
   */
  METRICS_LINGER_MS: int(0, 0, 3_600_000),
};

export const DEFAULT_METRICS_PORT = 9464;

export type MetricsConfig = {
  enabled: boolean;
  port: number;
  /** True when METRICS_PORT was not set: a taken default port falls back to a free one. */
  portIsDefault: boolean;
  host: string;
  lingerMs: number;
};

export function toMetricsConfig(e: {
  METRICS_PORT: number;
  METRICS_HOST: string;
  METRICS_ENABLED: boolean;
  METRICS_LINGER_MS: number;
}): MetricsConfig {
  return {
    enabled: e.METRICS_ENABLED,
    port: e.METRICS_PORT === -1 ? DEFAULT_METRICS_PORT : e.METRICS_PORT,
    portIsDefault: e.METRICS_PORT === -1,
    host: e.METRICS_HOST.trim() || '0.0.0.0',
    lingerMs: e.METRICS_LINGER_MS,
  };
}
