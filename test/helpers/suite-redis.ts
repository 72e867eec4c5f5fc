import { findRedisServer, NO_REDIS_SERVER_MESSAGE, startRedisServer } from '../../shared/redis-server.js';

export type SuiteRedis = {
  url: string;
  source: 'env' | 'testcontainers' | 'redis-server';
  /** One line for the test log: which Redis the tests use, and why. */
  description: string;
  stop: () => Promise<void>;
};

/**
 * Redis for the whole suite: REDIS_URL if set; else a testcontainers Redis when a Docker engine
 * answers and the container starts; else (no engine, or it cannot pull or start the image) a private
 * redis-server on a free port.
 */
export async function suiteRedis(opts: {
  env: NodeJS.ProcessEnv;
  image?: string;
  binary?: string | null;
}): Promise<SuiteRedis> {
  const { env } = opts;
  if (env.REDIS_URL)
    return {
      url: env.REDIS_URL,
      source: 'env',
      description: `REDIS_URL (${env.REDIS_URL})`,
      stop: async () => {},
    };
  const image = opts.image ?? 'redis:7-alpine';
  const container = await startContainer(image);
  if ('url' in container)
    return {
      url: container.url,
      source: 'testcontainers',
      description: `a testcontainers ${image} at ${container.url}`,
      stop: container.stop,
    };
  const binary = opts.binary === undefined ? findRedisServer(env.PATH ?? '') : opts.binary;
  if (!binary) throw new Error(`${NO_REDIS_SERVER_MESSAGE} (${container.why})`);
  const server = await startRedisServer({ binary });
  return {
    url: server.url,
    source: 'redis-server',
    description: `a private ${binary} at ${server.url} (${container.why})`,
    stop: () => server.stop(),
  };
}

async function startContainer(
  image: string,
): Promise<{ url: string; stop: () => Promise<void> } | { why: string }> {
  const { getContainerRuntimeClient } = await import('testcontainers');
  try {
    // Throws within milliseconds when no engine answers.
    await getContainerRuntimeClient();
  } catch {
    return { why: 'no Docker engine answers' };
  }
  try {
    const { RedisContainer } = await import('@testcontainers/redis');
    const started = await new RedisContainer(image).start();
    return { url: started.getConnectionUrl(), stop: async () => void (await started.stop()) };
  } catch (err) {
    // An engine that answers but reaches no registry fails the pull (HTTP 500).
    const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
    return { why: `a Docker engine answers but the container did not start: ${message}` };
  }
}
