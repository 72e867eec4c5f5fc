import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { ChaosRedis } from '../chaos/chaos-redis.js';
import { ProcessGroup, type ChaosProcess } from '../chaos/processes.js';
import { queueShards, runKeys, shardRunKeys } from '../shared/keys.js';
import { CLUSTER_FAILOVER_OPTIONS, type RedisClient } from '../shared/redis.js';
import { startRedisCluster, type RedisClusterHandle } from '../shared/redis-server.js';

/**
 * Protocol timings scaled down so recovery takes seconds (the chaos suite's, plus MAX_STALLED=3:
 * a job sharing its process with a SIGKILL several times should still end by its own outcome).
 */
export const TIMINGS = {
  HEARTBEAT_MS: '200',
  LEASE_MS: '3000',
  LOCK_MS: '2000',
  STALLED_INTERVAL_MS: '1000',
  MAX_STALLED: '3',
  SHUTDOWN_GRACE_MS: '5000',
  CANCEL_GRACE_MS: '2000',
  ATTEMPTS: '2',
  BACKOFF_MS: '50',
} as const;

/** How long a retried job's handler runs (SOAK_SLOW_MS), so a join that does not wait for it shows. */
export const SLOW_RETRY_MS = 4_000;

/**
 * The soak's world: one private Redis (AOF, appendfsync always, so it can be SIGKILLed and restarted
 * without losing acknowledged writes) or a local 3-master Redis Cluster with a replica each, the
 * processes, the ledger files, and the harness's own connection. `close()` leaves nothing running.
 */
export class SoakWorld {
  readonly queue = 'soak';
  readonly procs: ProcessGroup;
  readonly files: { handlers: string; puts: string; slowDir: string; logs: string };

  private constructor(
    readonly dir: string,
    readonly redis: ChaosRedis | null,
    readonly cluster: RedisClusterHandle | null,
    readonly client: RedisClient,
    readonly shards: number,
  ) {
    this.files = {
      handlers: join(dir, 'handlers.ledger'),
      puts: join(dir, 'puts.ledger'),
      slowDir: join(dir, 'slow'),
      logs: join(dir, 'logs'),
    };
    mkdirSync(this.files.slowDir);
    mkdirSync(this.files.logs);
    this.procs = new ProcessGroup(this.files.logs);
  }

  static async open(opts: { binary: string; cluster: boolean }): Promise<SoakWorld> {
    const dir = mkdtempSync(join(tmpdir(), 'conveyor-soak-'));
    const harness = { maxRetriesPerRequest: null, connectionName: 'soak-harness' };
    if (opts.cluster) {
      const cluster = await startRedisCluster({ binary: opts.binary, masters: 3, replicas: 1 });
      const client = new Cluster(
        cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
        { ...CLUSTER_FAILOVER_OPTIONS, redisOptions: harness, clusterRetryStrategy: () => 100 },
      );
      client.on('error', () => undefined);
      return new SoakWorld(dir, null, cluster, client, 3);
    }
    const redis = await ChaosRedis.create(opts.binary, { persistence: 'aof-always' });
    const client = new Redis(redis.url, { ...harness, retryStrategy: () => 100 });
    client.on('error', () => undefined);
    return new SoakWorld(dir, redis, null, client, 1);
  }

  get redisUrl(): string {
    return this.cluster?.url ?? this.redis!.url;
  }

  /** What every process of the soak shares; `extra` wins. */
  env(extra: Record<string, string | number>): Record<string, string> {
    const env: Record<string, string> = {
      ...TIMINGS,
      REDIS_URL: this.redisUrl,
      QUEUE: this.queue,
      SHARDS: String(this.shards),
      LOG_LEVEL: 'info',
      JOB_MODULES: './soak/soak-jobs.ts',
      SOAK_LEDGER: this.files.handlers,
      SOAK_SLOW_DIR: this.files.slowDir,
      SOAK_SLOW_MS: String(SLOW_RETRY_MS),
    };
    for (const [k, v] of Object.entries(extra)) env[k] = String(v);
    return env;
  }

  spawnConsumer(label: string, env: Record<string, string | number>): ChaosProcess {
    return this.procs.spawnRole('consumer', label, this.env(env));
  }

  /** producers/main.ts; LOG_LEVEL=debug because its `put` lines are its side of the ledger. */
  spawnCliProducer(label: string, env: Record<string, string | number>): ChaosProcess {
    return this.procs.spawnRole('producer', label, this.env({ ...env, LOG_LEVEL: 'debug' }));
  }

  spawnLibraryProducer(label: string, env: Record<string, string | number>): ChaosProcess {
    return this.procs.spawn(
      label,
      'script',
      process.execPath,
      ['--import', 'tsx', 'soak/library-producer/main.ts'],
      this.env({ ...env, SOAK_PUT_LEDGER: this.files.puts, LOG_LEVEL: 'warn' }),
    );
  }

  /** The masters (one Redis, or every cluster master) for commands that act on one node. */
  masters(): Promise<Redis[]> {
    return Promise.resolve(this.client instanceof Cluster ? this.client.nodes('master') : [this.client]);
  }

  /**
   * Every key under the run's prefixes (the run's own and each shard's), with its TTL in ms (-1:
   * none). SCAN skips keys whose TTL has passed.
   */
  async runKeysLeft(runId: string): Promise<{ key: string; ttlMs: number }[]> {
    const meta = [
      runKeys(this.queue, runId).meta,
      ...queueShards(this.queue, this.shards).map((s) => shardRunKeys(s, runId).meta),
    ];
    const patterns = [...new Set(meta.map((k) => `${k.slice(0, -':meta'.length)}:*`))];
    const found: { key: string; ttlMs: number }[] = [];
    for (const node of await this.masters()) {
      for (const pattern of patterns) {
        let cursor = '0';
        do {
          const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
          cursor = next;
          for (const key of keys) found.push({ key, ttlMs: await node.pttl(key) });
        } while (cursor !== '0');
      }
    }
    return found.filter((k) => k.ttlMs !== -2);
  }

  /** Stops every process (SIGKILL after `graceMs`), the harness's connection and Redis; keeps the folder when asked. */
  async close(opts: {
    graceMs: number;
    keep: boolean;
  }): Promise<{ stragglers: string[]; dir: string | null }> {
    for (const p of this.procs.live()) p.signal('SIGTERM');
    const stragglers = await this.procs.settle(opts.graceMs);
    this.client.disconnect();
    await (this.redis ?? this.cluster)?.stop();
    if (opts.keep) return { stragglers, dir: this.dir };
    rmSync(this.dir, { recursive: true, force: true });
    return { stragglers, dir: null };
  }
}
