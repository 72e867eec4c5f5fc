import type { Env } from '../../shared/config.js';
import {
  findRedisServer,
  NO_REDIS_SERVER_MESSAGE,
  startRedisCluster,
  startRedisServer,
} from '../../shared/redis-server.js';
import type { Terminal } from './terminal.js';

/** The Redis the demo runs on, and the private server (or cluster) it started, if any. */
export type DemoRedis = {
  url: string;
  /** SHARDS for the children: as given, or one per master of a local cluster. */
  shards: string | undefined;
  server: { stop(): Promise<void> } | undefined;
};

/**
 * REDIS_URL when set; else a private Redis, or with `cluster` > 0 a local Redis Cluster of that many
 * masters, each with a replica. Says on the terminal what it started; an exit code when it cannot.
 */
export async function provideRedis(env: Env, cluster: number, term: Terminal): Promise<DemoRedis | number> {
  if (env.REDIS_URL && cluster > 0) {
    term.stderr.write('demo: DEMO_CLUSTER starts a local cluster, so it needs REDIS_URL unset\n');
    return 2;
  }
  if (env.REDIS_URL) return { url: env.REDIS_URL, shards: env.SHARDS, server: undefined };
  const binary = findRedisServer(env.PATH ?? '');
  if (!binary) {
    term.stderr.write(`demo: ${NO_REDIS_SERVER_MESSAGE}\n`);
    return 1;
  }
  if (cluster > 0) {
    const server = await startRedisCluster({ binary, masters: cluster, replicas: 1 });
    const shards = env.SHARDS ?? String(cluster);
    term.stdout.write(
      `Started a local Redis Cluster: ${cluster} masters, each with a replica, at ${server.url}; the queue is spread over ${shards} shards.\n`,
    );
    return { url: server.url, shards, server };
  }
  const server = await startRedisServer({ binary });
  term.stdout.write(`Started a private Redis at ${server.url} (set REDIS_URL to use your own).\n`);
  return { url: server.url, shards: env.SHARDS, server };
}
