import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Cluster, Redis } from 'ioredis';
import { CLUSTER_FAILOVER_OPTIONS, type RedisClient } from '../shared/redis.js';
import { freePort, startRedisCluster, type RedisClusterHandle } from '../shared/redis-server.js';
import { RunStore } from '../shared/run/run-store.js';
import { ChaosRedis, type Persistence } from './chaos-redis.js';
import { audit, type AuditFigures } from './audit.js';
import { ProcessGroup, type ChaosProcess } from './processes.js';

export type ScenarioContext = {
  /** Full sizes (`npm run chaos -- --full`) or the scaled-down ones CI runs. */
  full: boolean;
  redisBinary: string;
  /** Progress lines for a person watching; never the table itself. */
  log: (line: string) => void;
  /** Keep each scenario's process logs and ledger even when it passes. */
  keepLogs?: boolean;
};

/** One line of the chaos table. */
export type Row = {
  scenario: string;
  jobs: number;
  faults: string;
  lost: number;
  duplicated: number;
  duplicateStarts: number;
  joinSeconds: number | null;
  pass: boolean;
  /** 'report': a row whose figures are reported rather than judged (a documented trade-off). */
  verdict?: 'report' | undefined;
  notes: string[];
};

/** Protocol timings scaled down so recovery takes seconds, the same ones the e2e tests use. */
export const FAST = {
  HEARTBEAT_MS: '200',
  LEASE_MS: '3000',
  LOCK_MS: '2000',
  STALLED_INTERVAL_MS: '1000',
  KEEP_COMPLETED: '1000000',
  KEEP_FAILED: '1000000',
  SHUTDOWN_GRACE_MS: '10000',
} as const;

export type Check = [ok: boolean, note: string];

/**
 * One scenario's world: a private Redis, the processes, the ledger file, and the audit that turns
 * them into a table row. `close()` leaves nothing running.
 */
export class Session {
  readonly queue = 'chaos';
  readonly runId = 'run';
  readonly ledgerFile: string;
  readonly procs: ProcessGroup;
  readonly client: RedisClient;
  /** The scenario's run, as every process of it sees it. */
  readonly run: RunStore;
  /** When the first conveyor process of the run was started (ms). */
  t0 = Date.now();
  faults = 0;
  /** Joins made by in-process producers of the harness (they log no "run joined" line). */
  harnessJoins = 0;
  private consumerSeq = 0;
  private producerSeq = 0;

  private constructor(
    readonly ctx: ScenarioContext,
    readonly name: string,
    readonly dir: string,
    private readonly single: ChaosRedis | null,
    /** The Redis Cluster of a cluster scenario (then there is no single Redis to fault). */
    readonly cluster: RedisClusterHandle | null,
    /** The URL processes get (may carry credentials; never printed). */
    readonly redisUrl: string,
    /** How many shards the queue is spread over (SHARDS of every process). */
    readonly shards: number,
    /** CA file for a `rediss://` Redis (REDIS_TLS_CA of every process, and the harness's connection). */
    readonly tlsCa?: string,
  ) {
    this.ledgerFile = join(dir, 'ledger.txt');
    this.procs = new ProcessGroup(dir);
    const redisOptions = {
      maxRetriesPerRequest: null,
      connectionName: 'chaos-harness',
      ...(tlsCa ? { tls: { ca: readFileSync(tlsCa) } } : {}),
    };
    this.client = cluster
      ? new Cluster(
          cluster.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
          {
            ...CLUSTER_FAILOVER_OPTIONS,
            redisOptions,
            clusterRetryStrategy: () => 100,
            lazyConnect: true,
          },
        )
      : new Redis(redisUrl, { ...redisOptions, retryStrategy: () => 100, lazyConnect: true });
    this.client.on('error', () => undefined);
    this.run = new RunStore(this.client, this.queue, this.runId, shards);
  }

  /** The scenario's single Redis, to crash, pause or restart. */
  get redis(): ChaosRedis {
    if (!this.single) throw new Error(`${this.name} runs on a Redis Cluster: fault its nodes instead`);
    return this.single;
  }

  static async open(
    ctx: ScenarioContext,
    name: string,
    opts: {
      persistence?: Persistence;
      /** Extra redis-server arguments; a function gets the scenario's folder (for certificates). */
      redisArgs?: string[] | ((dir: string, port: number) => string[]);
      startRedis?: boolean;
      url?: (plain: string) => string;
      tlsCa?: (dir: string) => string;
      /** Run on a local Redis Cluster instead of one Redis, the queue spread over `shards` shards. */
      cluster?: { masters: number; replicas: number; shards: number };
    } = {},
  ): Promise<Session> {
    const dir = mkdtempSync(join(tmpdir(), `conveyor-chaos-${name.replace(/[^a-z0-9]+/gi, '-')}-`));
    if (opts.cluster) {
      const { masters, replicas, shards } = opts.cluster;
      const cluster = await startRedisCluster({ binary: ctx.redisBinary, masters, replicas });
      const s = new Session(ctx, name, dir, null, cluster, cluster.url, shards);
      await s.client.connect();
      return s;
    }
    const port = await freePort();
    const redis = await ChaosRedis.create(ctx.redisBinary, {
      port,
      persistence: opts.persistence,
      args: typeof opts.redisArgs === 'function' ? opts.redisArgs(dir, port) : opts.redisArgs,
      start: opts.startRedis,
    });
    const url = opts.url ? opts.url(redis.url) : redis.url;
    const s = new Session(ctx, name, dir, redis, null, url, 1, opts.tlsCa?.(dir));
    if (opts.startRedis !== false) await s.client.connect();
    return s;
  }

  /** The environment every process of the run shares; `extra` wins. */
  env(extra: Record<string, string | number> = {}): Record<string, string> {
    const base: Record<string, string> = {
      ...FAST,
      REDIS_URL: this.redisUrl,
      QUEUE: this.queue,
      RUN_ID: this.runId,
      LOG_LEVEL: 'info',
      JOB_MODULES: './chaos/ledger-jobs.ts',
      JOB_TYPE: 'ledger',
      JOB_PAYLOAD: '{"ms":5}',
      LEDGER_FILE: this.ledgerFile,
      PRODUCE_INTERVAL_MS: '0',
      BATCH_SIZE: '50',
      SHARDS: String(this.shards),
      ...(this.tlsCa ? { REDIS_TLS_CA: this.tlsCa } : {}),
    };
    for (const [k, v] of Object.entries(extra)) base[k] = String(v);
    return base;
  }

  /** A producer process; LOG_LEVEL=debug because its `put` lines are the producers' ledger. */
  producer(env: Record<string, string | number> = {}, label?: string): ChaosProcess {
    const id = label ?? `p${++this.producerSeq}`;
    return this.procs.spawnRole('producer', id, this.env({ PRODUCER_ID: id, ...env, LOG_LEVEL: 'debug' }));
  }

  consumer(env: Record<string, string | number> = {}, label?: string): ChaosProcess {
    const id = label ?? `c${++this.consumerSeq}`;
    return this.procs.spawnRole('consumer', id, this.env({ CONSUMER_ID: id, ...env }));
  }

  producers(): ChaosProcess[] {
    return this.procs.all.filter((p) => p.role === 'producer');
  }

  /** The run's joinedAt (ms), polling until it joins or `timeoutMs` passes (then null). */
  async waitForJoin(timeoutMs: number, everyMs = 200): Promise<number | null> {
    const deadline = Date.now() + timeoutMs;
    // Looks at least once, so waitForJoin(0) is "has it joined yet?".
    for (;;) {
      const [state, joinedAt] = await this.client.hmget(this.run.keys.meta, 'state', 'joinedAt');
      if (state === 'joined') return Number(joinedAt);
      if (Date.now() >= deadline) return null;
      await sleep(everyMs);
    }
  }

  /** The run's job id prefix (`<run>+<n>`): every job id of the run begins with it. */
  idPrefix(): Promise<string> {
    return this.run.idPrefix();
  }

  async unfinished(): Promise<number> {
    return this.run.unfinished();
  }

  audit(
    opts: {
      extraAcknowledged?: Iterable<string>;
      injected?: ReadonlySet<string>;
      keyed?: boolean;
      callbacks?: ReadonlySet<string>;
    } = {},
  ): Promise<AuditFigures> {
    return audit({
      redis: this.client,
      queue: this.queue,
      shards: this.shards,
      runId: this.runId,
      ledgerFile: this.ledgerFile,
      producers: this.producers(),
      all: this.procs.all,
      leaseMs: Number(FAST.LEASE_MS),
      harnessJoins: this.harnessJoins,
      ...opts,
    });
  }

  /**
   * The standard verdict: 0 lost, 0 counted twice, 0 unexpected, joined exactly once; plus the
   * scenario's own checks. `expectJoin: false` for scenarios whose honest outcome is no join.
   */
  row(
    a: AuditFigures,
    opts: {
      jobs: number;
      joinedAt: number | null;
      checks?: Check[];
      expectJoin?: boolean;
      notes?: string[];
      faults?: string;
    },
  ): Row {
    const notes = [...(opts.notes ?? [])];
    const checks: Check[] = [
      [
        a.lost.length === 0,
        `lost ${a.lost.length}${a.lost.length ? ` (e.g. ${a.lost.slice(0, 3).join(', ')})` : ''}`,
      ],
      [a.duplicated === 0, `counted twice ${a.duplicated}`],
      [a.unexpected.length === 0, `unexpected ${a.unexpected.length}`],
      ...(opts.expectJoin === false
        ? []
        : ([[opts.joinedAt !== null && a.joins === 1, `joined ${a.joins}x`]] as Check[])),
      ...(opts.checks ?? []),
    ];
    for (const [ok, note] of checks) if (!ok) notes.push(`FAILED: ${note}`);
    if (a.reexecuted > 0) notes.push(`${a.reexecuted} handler(s) ran to the end twice`);
    if (a.failed.length > 0) notes.push(`${a.failed.length} failed`);
    const pass = checks.every(([ok]) => ok);
    return {
      scenario: this.name,
      jobs: opts.jobs,
      faults: opts.faults ?? String(this.faults),
      lost: a.lost.length,
      duplicated: a.duplicated,
      duplicateStarts: a.duplicateStarts,
      joinSeconds: opts.joinedAt === null ? null : Math.round((opts.joinedAt - this.t0) / 100) / 10,
      pass,
      notes,
    };
  }

  /** Stops everything this scenario started; keeps the logs folder when asked to (or on failure). */
  async close(keep = false): Promise<string | null> {
    const stragglers = await this.procs.settle(0);
    this.client.disconnect();
    await (this.single ?? this.cluster)?.stop();
    if (keep || this.ctx.keepLogs) return this.dir;
    rmSync(this.dir, { recursive: true, force: true });
    void stragglers;
    return null;
  }
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` until it returns true; false after `timeoutMs`. */
export async function until(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 100,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(everyMs);
  }
}
