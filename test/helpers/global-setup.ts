import type { TestProject } from 'vitest/node';
import { findRedisServer, NO_REDIS_SERVER_MESSAGE, startRedisServer } from '../../shared/redis-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
    redisSource: 'env' | 'testcontainers' | 'redis-server';
    redisServerBinary: string | null;
  }
}

/**
 * Redis for the whole suite: REDIS_URL if set; else a testcontainers Redis when a Docker engine
 * answers; else a private redis-server on a free port. Tests that kill or restart Redis start their own.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const binary = findRedisServer(process.env.PATH ?? '');
  project.provide('redisServerBinary', binary);
  if (process.env.REDIS_URL) {
    project.provide('redisUrl', process.env.REDIS_URL);
    project.provide('redisSource', 'env');
    return () => Promise.resolve();
  }
  const container = await startContainerIfDocker();
  if (container) {
    project.provide('redisUrl', container.url);
    project.provide('redisSource', 'testcontainers');
    return () => container.stop();
  }
  if (!binary) throw new Error(NO_REDIS_SERVER_MESSAGE);
  const server = await startRedisServer({ binary });
  project.provide('redisUrl', server.url);
  project.provide('redisSource', 'redis-server');
  return () => server.stop();
}

async function startContainerIfDocker(): Promise<{ url: string; stop: () => Promise<void> } | null> {
  const { getContainerRuntimeClient } = await import('testcontainers');
  try {
    // Throws within milliseconds when no engine answers.
    await getContainerRuntimeClient();
  } catch {
    return null;
  }
  const { RedisContainer } = await import('@testcontainers/redis');
  const started = await new RedisContainer('redis:7-alpine').start();
  return { url: started.getConnectionUrl(), stop: async () => void (await started.stop()) };
}
