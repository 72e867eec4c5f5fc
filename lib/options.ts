import type { Env } from '../shared/config.js';
import { createLogger, type Logger } from '../shared/logger.js';

/** Where the queue lives; the same settings the commands read from the environment. */
export type ConnectionOptions = {
  /** Default `redis://127.0.0.1:6379`. */
  redisUrl?: string;
  /** Default `conveyor`. */
  queue?: string;
  /** BullMQ queues the queue is spread over (default 1); every process of a run must agree. */
  shards?: number;
  /** How often a producer or consumer renews its lease (ms, default 1000; at most a third of `leaseMs`). */
  heartbeatMs?: number;
  /** How long a producer or consumer counts as alive without a heartbeat (ms, default 10000). */
  leaseMs?: number;
  /** A pino logger; default: JSON warnings and errors on stderr. */
  log?: Logger;
  /**
   * Any other setting by its environment variable name, as the commands read them (`LEASE_MS`,
   * `HEARTBEAT_MS`, `REDIS_TLS_CA`, `LOCK_MS`...). Validated the same way: a bad value throws a
   * ConfigError naming the variable. The library never reads `process.env` itself.
   */
  env?: Env;
};

/** Option values as environment strings, so one parser (and its error messages) serves both ways in. */
export function toEnv(
  opts: ConnectionOptions,
  more: Record<string, string | number | boolean | undefined> = {},
): Env {
  const pairs: Record<string, string | number | boolean | undefined> = {
    REDIS_URL: opts.redisUrl,
    QUEUE: opts.queue,
    SHARDS: opts.shards,
    HEARTBEAT_MS: opts.heartbeatMs,
    LEASE_MS: opts.leaseMs,
    ...more,
  };
  const env: Record<string, string | undefined> = { ...opts.env };
  for (const [k, v] of Object.entries(pairs)) if (v !== undefined) env[k] = String(v);
  return env;
}

export function loggerFor(opts: ConnectionOptions, service: string): Logger {
  return opts.log ?? createLogger({ level: 'warn', service });
}
