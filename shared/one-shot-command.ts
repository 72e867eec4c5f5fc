import {
  commonShape,
  optionalName,
  parseEnv,
  toCommonConfig,
  type CommonConfig,
  type Env,
} from './config.js';
import type { Logger } from './logger.js';
import { startProcess } from './process.js';
import { createRedis, readyWithin, type RedisClient } from './redis.js';

/** A one-shot command: a Redis that does not answer is an error to report, not an outage to wait out. */
export const CONNECT_TIMEOUT_MS = 5_000;

export type OneShotCommand = {
  config: CommonConfig & { runId: string | undefined };
  log: Logger;
  /** Created, not yet known to answer: await `connected` before the first command. */
  redis: RedisClient;
  /** Waits at most CONNECT_TIMEOUT_MS for Redis; rejects naming REDIS_URL, then `advice`. */
  connected: (advice: string) => Promise<void>;
};

/**
 * The start of a one-shot command (status, cancel): the common settings and an optional RUN_ID from
 * the environment, and a Redis client named `conveyor:<service>`. Null when the environment is
 * refused: startProcess has then printed why and set exit code 2.
 */
export function startOneShotCommand(service: string, env: Env, proc: NodeJS.Process): OneShotCommand | null {
  const started = startProcess(
    service,
    (env) => {
      const e = parseEnv({ ...commonShape, RUN_ID: optionalName() }, env);
      return { ...toCommonConfig(e), runId: e.RUN_ID };
    },
    env,
    proc,
  );
  if (!started) return null;
  const { config, log } = started;
  const redis = createRedis(config, log, `conveyor:${service}`);
  return {
    config,
    log,
    redis,
    connected: (advice) => readyWithin(redis, log, config.redisUrl, CONNECT_TIMEOUT_MS, advice),
  };
}
