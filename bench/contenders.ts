import { resolve } from 'node:path';
import type { Redis } from 'ioredis';
import type { RedisClient } from '../shared/redis.js';
import { bullKeyPrefix, runKeys } from '../shared/keys.js';
import { projectRoot } from '../shared/roles.js';
import { spawnChild, sleep, type BenchChild } from './proc.js';

export const CONTENDERS = ['conveyor', 'bullmq', 'bee-queue', 'redis-list'] as const;
export type ContenderName = (typeof CONTENDERS)[number];

/** One run's shape: the same for every contender. */
export type RunSpec = {
  redisUrl: string;
  queue: string;
  runId: string;
  jobs: number;
  batchSize: number;
  intervalMs: number;
  /** Per consumer process. */
  concurrency: number;
  consumers: number;
  keepCompleted: number;
  /** When set, every producer and consumer runs with `node --cpu-prof` writing here, named by label. */
  cpuProfDir?: string;
  /** Concurrent put callers in the producer process, each putting one job at a time (default 1). */
  putCallers?: number;
};

export type RunTimes = {
  /** When the first add was issued (ms, this machine's clock). */
  firstAddAt: number;
  /** When the last job finished. */
  lastDoneAt: number;
  completed: number;
  /** conveyor only: when the run joined (Redis clock, same machine). */
  joinedAt?: number;
};

export type Contender = {
  name: ContenderName;
  startConsumer(spec: RunSpec, index: number): BenchChild;
  startProducer(spec: RunSpec): BenchChild;
  /** Resolves once every consumer is ready to take work. */
  ready(spec: RunSpec, consumers: BenchChild[], redis: Redis): Promise<void>;
  /** Resolves once every job is finished and every consumer has exited (stopping them if needed). */
  finish(spec: RunSpec, consumers: BenchChild[], producer: BenchChild): Promise<void>;
  times(spec: RunSpec, consumers: BenchChild[], producer: BenchChild, redis: Redis): Promise<RunTimes>;
  /** add → start of each job, ms (the run must have kept its jobs: keepCompleted ≥ jobs). */
  latencies(spec: RunSpec, consumers: BenchChild[], redis: Redis): Promise<number[]>;
};

// Compiled with the project root as rootDir (contenders may use conveyor's library): dist/bench/lib/bench/contenders.
const contenderScript = (file: string) =>
  resolve(projectRoot, 'dist', 'bench', 'lib', 'bench', 'contenders', `${file}.js`);

/**
 * The conveyor roles compiled by the harness into their own folder (tsconfig.build.json with
 * --outDir), so a concurrent `npm run build` cannot swap the code under a running benchmark.
 */
export const conveyorBuildDir = resolve(projectRoot, 'dist', 'bench', 'app');
export const conveyorScript = (role: 'producers' | 'consumers') => resolve(conveyorBuildDir, role, 'main.js');
export const noopJobModule = contenderScript('noop-job');

const contenderEnv = (spec: RunSpec): Record<string, string> => ({
  REDIS_URL: spec.redisUrl,
  QUEUE: spec.queue,
  RUN_ID: spec.runId,
  PRODUCER_ID: 'p1',
  JOBS: String(spec.jobs),
  BATCH_SIZE: String(spec.batchSize),
  PRODUCE_INTERVAL_MS: String(spec.intervalMs),
  CONCURRENCY: String(spec.concurrency),
  KEEP_COMPLETED: String(spec.keepCompleted),
  PUT_CALLERS: String(spec.putCallers ?? 1),
  // Only latency runs (which keep every job) need the per-job samples on the final report line.
  MEASURE_LATENCY: spec.keepCompleted >= spec.jobs ? '1' : '0',
});

async function expectCleanExit(p: BenchChild): Promise<void> {
  const { code, signal } = await p.exit;
  if (code !== 0) throw new Error(`${p.label} exited with ${signal ?? `code ${code}`}:\n${p.stderr()}`);
}

/** BullMQ's finishedOn of the newest completed job, and add → processedOn of every job kept. */
async function bullmqLastFinished(redis: Redis, queue: string): Promise<number> {
  const newest = await redis.zrevrange(`${bullKeyPrefix(queue)}completed`, 0, 0, 'WITHSCORES');
  return Number(newest[1] ?? 0);
}

async function bullmqLatencies(redis: Redis, queue: string): Promise<number[]> {
  const prefix = bullKeyPrefix(queue);
  const ids = await redis.zrange(`${prefix}completed`, '0', '-1');
  const pipeline = redis.pipeline();
  for (const id of ids) pipeline.hmget(`${prefix}${id}`, 'timestamp', 'processedOn');
  const rows = (await pipeline.exec()) ?? [];
  return rows.flatMap(([err, v]) => {
    const [ts, processed] = (err ? [] : (v as (string | null)[])).map(Number);
    return ts && processed ? [processed - ts] : [];
  });
}

/** `node --cpu-prof` flags for one process, its profile named after it (several runs share the folder). */
function profArgs(spec: RunSpec, label: string): string[] {
  if (!spec.cpuProfDir) return [];
  const name = `${label}-${spec.concurrency}-${Date.now()}.cpuprofile`;
  return ['--cpu-prof', '--cpu-prof-dir', spec.cpuProfDir, '--cpu-prof-name', name];
}

/** The bench-only contenders: they report progress on stdout and are stopped with SIGTERM when done. */
function rawContender(name: ContenderName, file: string, bullmq: boolean): Contender {
  const lastLine = (c: BenchChild, ev: string) => c.lines.filter((l) => l.ev === ev).at(-1);
  return {
    name,
    startConsumer: (spec, i) =>
      spawnChild(
        `${name}-consumer-${i}`,
        process.execPath,
        [...profArgs(spec, `${name}-consumer-${i}`), contenderScript(`${file}-consumer`)],
        contenderEnv(spec),
        projectRoot,
      ),
    startProducer: (spec) =>
      spawnChild(
        `${name}-producer`,
        process.execPath,
        [...profArgs(spec, `${name}-producer`), contenderScript(`${file}-producer`)],
        contenderEnv(spec),
        projectRoot,
      ),
    ready: async (_spec, consumers) => {
      await Promise.all(consumers.map((c) => c.waitLine((l) => l.ev === 'ready')));
    },
    finish: async (spec, consumers, producer) => {
      await expectCleanExit(producer);
      const latest = consumers.map(() => 0);
      await new Promise<void>((resolveDone, reject) => {
        const check = () => {
          if (latest.reduce((a, b) => a + b, 0) >= spec.jobs) resolveDone();
        };
        consumers.forEach((c, i) => {
          latest[i] = Number(lastLine(c, 'progress')?.done ?? 0);
          c.onLine((l) => {
            if (l.ev === 'progress') {
              latest[i] = Number(l.done);
              check();
            }
          });
          void c.exit.then(() =>
            reject(new Error(`${c.label} exited before all jobs were done:\n${c.stderr()}`)),
          );
        });
        check();
      });
      for (const c of consumers) c.child.kill('SIGTERM');
      await Promise.all(consumers.map(expectCleanExit));
    },
    times: async (spec, consumers, producer, redis) => {
      const added = lastLine(producer, 'added');
      const exits = consumers.map((c) => lastLine(c, 'exit'));
      // The progress lines count too, should a final report line go missing.
      const completed = consumers.reduce(
        (a, c, i) => a + Math.max(Number(exits[i]?.done ?? 0), Number(lastLine(c, 'progress')?.done ?? 0)),
        0,
      );
      const lastDoneAt = bullmq
        ? await bullmqLastFinished(redis, spec.queue)
        : Math.max(...exits.map((e) => Number(e?.lastDoneAt ?? 0)));
      return { firstAddAt: Number(added?.firstAddAt ?? NaN), lastDoneAt, completed };
    },
    latencies: async (spec, consumers, redis) => {
      if (bullmq) return bullmqLatencies(redis, spec.queue);
      return consumers.flatMap((c) => (lastLine(c, 'exit')?.latencies as number[] | undefined) ?? []);
    },
  };
}

/** Each conveyor consumer writes its record (state idle) into the run just before its workers start. */
export async function waitForIdleConsumers(
  redis: RedisClient,
  queue: string,
  runId: string,
  consumers: readonly BenchChild[],
): Promise<void> {
  const key = runKeys(queue, runId).consumers;
  for (;;) {
    const dead = consumers.find((c) => c.exited());
    if (dead) throw new Error(`${dead.label} exited during start-up:\n${dead.stderr()}`);
    const records = (await redis.hvals(key)).map((r) => JSON.parse(r) as { state: string });
    if (records.length >= consumers.length && records.every((r) => r.state === 'idle')) return;
    await sleep(25);
  }
}

/** The real conveyor processes, compiled: they join the run and exit by themselves. */
const conveyor: Contender = {
  name: 'conveyor',
  startConsumer: (spec, i) => {
    return spawnChild(
      `conveyor-consumer-${i}`,
      process.execPath,
      [...profArgs(spec, `conveyor-consumer-${i}`), conveyorScript('consumers')],
      {
        REDIS_URL: spec.redisUrl,
        QUEUE: spec.queue,
        RUN_ID: spec.runId,
        CONSUMER_ID: `c${i}`,
        CONCURRENCY: String(spec.concurrency),
        JOB_MODULES: noopJobModule,
        LOG_LEVEL: 'warn',
      },
      projectRoot,
    );
  },
  startProducer: (spec) => {
    // Many concurrent put callers are a library user's shape (a server), not the producer role's.
    if ((spec.putCallers ?? 1) > 1)
      return spawnChild(
        'conveyor-callers-producer',
        process.execPath,
        [...profArgs(spec, 'conveyor-callers-producer'), contenderScript('conveyor-callers-producer')],
        contenderEnv(spec),
        projectRoot,
      );
    return spawnChild(
      'conveyor-producer',
      process.execPath,
      [...profArgs(spec, 'conveyor-producer'), conveyorScript('producers')],
      {
        REDIS_URL: spec.redisUrl,
        QUEUE: spec.queue,
        RUN_ID: spec.runId,
        PRODUCERS: '1',
        PRODUCER_ID: 'p1',
        JOBS: String(spec.jobs),
        PRODUCE_INTERVAL_MS: String(spec.intervalMs),
        BATCH_SIZE: String(spec.batchSize),
        JOB_TYPE: 'noop',
        JOB_MODULES: noopJobModule,
        JOB_PAYLOAD: JSON.stringify({ value: 0, ms: 0 }),
        KEEP_COMPLETED: String(spec.keepCompleted),
        LOG_LEVEL: 'warn',
      },
      projectRoot,
    );
  },
  ready: (spec, consumers, redis) => waitForIdleConsumers(redis, spec.queue, spec.runId, consumers),
  finish: async (_spec, consumers, producer) => {
    await expectCleanExit(producer);
    await Promise.all(consumers.map(expectCleanExit));
  },
  times: async (spec, _consumers, _producer, redis) => {
    const k = runKeys(spec.queue, spec.runId);
    const [producerRaw, meta] = await Promise.all([redis.hget(k.producers, 'p1'), redis.hgetall(k.meta)]);
    const producer = producerRaw ? (JSON.parse(producerRaw) as { startedAt: number }) : null;
    return {
      // Registration is the producer's last step before its first add (same machine clock).
      firstAddAt: producer?.startedAt ?? NaN,
      lastDoneAt: await bullmqLastFinished(redis, spec.queue),
      completed: Number(meta.completed ?? 0),
      joinedAt: meta.joinedAt === undefined ? undefined : Number(meta.joinedAt),
    };
  },
  latencies: (spec, _consumers, redis) => bullmqLatencies(redis, spec.queue),
};

export const contenders: Record<ContenderName, Contender> = {
  conveyor,
  bullmq: rawContender('bullmq', 'bullmq', true),
  'bee-queue': rawContender('bee-queue', 'beequeue', false),
  'redis-list': rawContender('redis-list', 'list', false),
};
