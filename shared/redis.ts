import { readFileSync } from 'node:fs';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from './logger.js';

export type RedisConnectionConfig = { redisUrl: string; redisTlsCaFile: string | undefined };

/** The URL with any password replaced, for logs and status output. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<invalid url>';
  }
}

/**
 * Opens a Redis connection that waits out outages instead of failing: commands queue while
 * disconnected (`maxRetriesPerRequest: null`, which BullMQ workers require anyway) and reconnects
 * back off up to 5 s, logging each wait so a missing Redis is never a silent hang.
 */
export function createRedis(config: RedisConnectionConfig, log: Logger, name: string): Redis {
  const options: RedisOptions = {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    connectionName: name,
    retryStrategy: (attempt) => {
      const delay = Math.min(100 * 2 ** Math.min(attempt, 6), 5_000);
      const logFn = attempt === 1 || attempt % 10 === 0 ? log.warn.bind(log) : log.debug.bind(log);
      logFn({ attempt, retryInMs: delay, redis: redactUrl(config.redisUrl) }, 'waiting for Redis');
      return delay;
    },
  };
  if (config.redisTlsCaFile) options.tls = { ca: readFileSync(config.redisTlsCaFile) };
  const redis = new Redis(config.redisUrl, options);
  // Errors surface through retryStrategy's log; without a listener ioredis would print them unformatted.
  redis.on('error', (err: Error) => log.debug({ err: err.message }, 'redis connection error'));
  return redis;
}

/** Resolves once the connection is ready (after any retries), logging that it is. */
export async function waitUntilReady(redis: Redis, log: Logger): Promise<void> {
  if (redis.status !== 'ready') {
    await new Promise<void>((resolve, reject) => {
      const onReady = () => {
        redis.off('end', onEnd);
        resolve();
      };
      const onEnd = () => {
        redis.off('ready', onReady);
        reject(new Error('Redis connection closed before it became ready.'));
      };
      redis.once('ready', onReady);
      redis.once('end', onEnd);
    });
  }
  log.debug('redis ready');
}

/** Closes a connection politely, falling back to a hard disconnect if QUIT cannot be sent. */
export async function closeRedis(redis: Redis): Promise<void> {
  if (redis.status === 'end') return;
  try {
    await Promise.race([redis.quit(), new Promise((_, rej) => setTimeout(rej, 1_000).unref())]);
  } catch {
    redis.disconnect();
  }
}
