import { ConfigError, type CommonConfig, type Env } from '../shared/config.js';
import { createLogger, type Logger } from '../shared/logger.js';

/** Where the queue lives and the protocol's timings: the settings every factory takes. */
export type ConnectionOptions = {
  /** Default `redis://127.0.0.1:6379`. */
  redisUrl?: string;
  /** Default `conveyor`. */
  queue?: string;
  /** BullMQ queues the queue is spread over (default 1); every process of a run must agree. */
  shards?: number;
  /** For `rediss://`: the CA file that signed the server's certificate (the commands' REDIS_TLS_CA). */
  tls?: { caFile?: string };
  /** How often a producer or consumer renews its lease (ms, default 1000; at most a third of `leaseMs`). */
  heartbeatMs?: number;
  /** How long a producer or consumer counts as alive without a heartbeat (ms, default 10000). */
  leaseMs?: number;
  /** A pino logger; default: JSON warnings and errors on stderr. */
  log?: Logger;
};

type OptionValue = string | number | boolean | undefined;

/** Each environment variable a loader reads, with the option that gives it and the value given. */
export type GivenOptions = Record<string, readonly [option: string, value: OptionValue]>;

/**
 * Parses typed options with the loader that parses the commands' environment, so both ways in share
 * one set of defaults, bounds and checks; a ConfigError names the option (`leaseMs`), not the
 * variable it stands for. The library never reads `process.env`.
 */
export function parseOptions<T>(load: (env: Env) => T, opts: ConnectionOptions, more: GivenOptions): T {
  const given: GivenOptions = {
    REDIS_URL: ['redisUrl', opts.redisUrl],
    REDIS_TLS_CA: ['tls.caFile', opts.tls?.caFile],
    QUEUE: ['queue', opts.queue],
    SHARDS: ['shards', opts.shards],
    HEARTBEAT_MS: ['heartbeatMs', opts.heartbeatMs],
    LEASE_MS: ['leaseMs', opts.leaseMs],
    ...more,
  };
  const env: Record<string, string> = {};
  for (const [variable, [, value]] of Object.entries(given))
    if (value !== undefined) env[variable] = String(value);
  try {
    return load(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    throw new ConfigError(err.problems.map((problem) => inOptionNames(problem, given)));
  }
}

/** A problem as the loader words it, with every variable it names replaced by its option's name. */
function inOptionNames(problem: string, given: GivenOptions): string {
  return problem.replace(/\b[A-Z][A-Z0-9_]*[A-Z0-9]\b/g, (word) => given[word]?.[0] ?? word);
}

export function loggerFor(opts: ConnectionOptions, service: string): Logger {
  return opts.log ?? createLogger({ level: 'warn', service });
}

/** The options a command's parsed settings stand for: how a command opens the library's handles. */
export function connectionOf(config: CommonConfig, log: Logger): ConnectionOptions {
  return {
    redisUrl: config.redisUrl,
    queue: config.queue,
    shards: config.shards,
    tls: config.redisTlsCaFile === undefined ? undefined : { caFile: config.redisTlsCaFile },
    heartbeatMs: config.heartbeatMs,
    leaseMs: config.leaseMs,
    log,
  };
}
