import type { TestProject } from 'vitest/node';
import { findRedisServer } from '../../shared/redis-server.js';
import { suiteRedis } from './suite-redis.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    redisSource: 'env' | 'testcontainers' | 'redis-server';
    redisServerBinary: string | null;
  }
}

/**
 * Redis for the whole suite (see suiteRedis: REDIS_URL, a testcontainers Redis, or a private
 * redis-server). Tests that kill or restart Redis start their own.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const binary = findRedisServer(process.env.PATH ?? '');
  project.provide('redisServerBinary', binary);
  const redis = await suiteRedis({ env: process.env, binary });
  process.stdout.write(`Tests use Redis: ${redis.description}\n`);
  project.provide('redisUrl', redis.url);
  project.provide('redisSource', redis.source);
  return redis.stop;
}
