import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { findRedisServer, NO_REDIS_SERVER_MESSAGE, startRedisServer } from '../shared/redis-server.js';
import { projectRoot } from '../shared/roles.js';
import { jobOptions } from '../shared/queue.js';
import { RunStore, type StoredJob } from '../shared/run/run-store.js';
import { putJobId } from '../shared/keys.js';
import type { ConsumerRecord } from '../shared/run/types.js';
import { sleep } from './proc.js';
import { commandStats, cpuSeconds, resetRedis } from './redis-info.js';

const USAGE = `Usage: npm run bench:join -- [options]

What the run protocol costs Redis: per job, the Redis time of its put (stored as BullMQ stores a
job, and acknowledged in the run, in one script) and of its finish report (batched as producers and
consumers batch them); as a run grows, Redis time per join check with 10 to 10,000 registered
producers, and Redis CPU while 2 to 200 consumers heartbeat (each heartbeat saves the consumer's
record and runs a join check) over a run's tail of open jobs. Starts its own redis-server.

  --producers LIST  registered producers per setup (default 10,1000,10000)
  --consumers LIST  heartbeating consumers per setup (default 2,20,200)
  --checks N        join checks timed per setup (default 300)
  --seconds N       heartbeat window per setup (default 10)
  --tail N          open (unfinished) jobs in the run's tail (default 1000)
  --jobs N          jobs per per-job cost repeat (default 20000; 5 repeats, median shown)
  --out FILE        JSON output (default bench/results/join-cost-<time>.json)
  -h, --help`;

/** Redis microseconds spent in the commands a join check uses (scripts and the reconcile scan). */
async function protocolUsec(redis: Redis): Promise<{ usec: number; calls: number }> {
  const stats = await commandStats(redis);
  const ours = stats.filter((s) => ['evalsha', 'eval', 'sscan', 'srandmember'].includes(s.command));
  return { usec: ours.reduce((n, s) => n + s.usec, 0), calls: ours.reduce((n, s) => n + s.calls, 0) };
}

/** A run with `producers` registered and done, and `tail` acknowledged jobs still open (their jobs waiting in BullMQ). */
/** Ids per protocol call, as the roles batch them. */
const BATCH = 500;

/** `count` no-op jobs of producer p0, in batches of BATCH, as a producer puts them. */
function jobBatches(runId: string, idPrefix: string, count: number): StoredJob[][] {
  const jobs = Array.from({ length: count }, (_, seq) => ({
    id: putJobId(idPrefix, 'p0', seq),
    seq,
    name: 'noop',
    data: JSON.stringify({ run: runId, producer: 'p0', payload: { value: seq, ms: 0 } }),
  }));
  return Array.from({ length: Math.ceil(count / BATCH) }, (_, i) => jobs.slice(i * BATCH, (i + 1) * BATCH));
}

const OPTIONS = JSON.stringify(
  jobOptions({ attempts: 3, backoffMs: 1_000, keepCompleted: 1_000, keepFailed: 1_000 }),
);

async function prepareRun(redis: Redis, runId: string, producers: number, tail: number): Promise<RunStore> {
  const run = new RunStore(redis, 'bench', runId);
  await run.create(producers, 600_000, 0);
  for (let i = 0; i < producers; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, producers - i) }, (_, j) =>
        run.registerProducer(`p${i + j}`, { host: 'bench', pid: i + j }, 600_000),
      ),
    );
  }
  for (const b of jobBatches(runId, await run.idPrefix(), tail)) await run.putJobs(0, 'p0', OPTIONS, b);
  for (let i = 0; i < producers; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, producers - i) }, (_, j) =>
        run.producerDone(`p${i + j}`, i + j === 0 ? [tail] : [0]).then(() => undefined),
      ),
    );
  }
  return run;
}

/** Every command Redis ran since the last RESETSTAT, those run inside scripts included. */
async function commandCalls(redis: Redis): Promise<number> {
  return (await commandStats(redis)).reduce((n, st) => n + st.calls, 0);
}

/** Redis µs spent in script calls (the protocol's per-job writes) since the last RESETSTAT. */
async function scriptUsec(redis: Redis): Promise<number> {
  const stats = await commandStats(redis);
  return stats.filter((s) => s.command === 'evalsha').reduce((n, s) => n + s.usec, 0);
}

/**
 * Redis time per job, in the batches the roles use: the put (which stores the job as BullMQ's own add
 * does and acknowledges it in the run) and the finish report. BullMQ's completion is not included.
 */
async function perJobCost(
  redis: Redis,
  jobs: number,
): Promise<{ putUs: number; finishUs: number; commands: number }> {
  await resetRedis(redis);
  const run = new RunStore(redis, 'bench', 'per-job');
  // Keeps every finished job: BullMQ's own trimming, which conveyor now does after counting, is not
  // part of the finish report's cost here (nor of BullMQ's moveToFinished before).
  await run.create(1, 600_000, 0);
  await run.registerProducer('p0', { host: 'bench', pid: 1 }, 600_000);
  const batches = jobBatches(run.runId, await run.idPrefix(), jobs);
  await redis.config('RESETSTAT');
  for (const b of batches) await run.putJobs(0, 'p0', OPTIONS, b);
  const put = await scriptUsec(redis);
  const putCalls = await commandCalls(redis);
  // BullMQ finishes the jobs (not measured); then the consumers' reports count them.
  const k = run.shardKeys[0]!;
  for (const b of batches) {
    const tx = redis.multi();
    for (const { id } of b) tx.hset(k.jobPrefix + id, 'finishedOn', 1).zadd(k.completed, 1, id);
    await tx.exec();
  }
  const beforeReports = await commandCalls(redis);
  for (const b of batches)
    await run.recordFinished(
      0,
      b.map(({ id }) => ({ id, outcome: 'completed' as const })),
    );
  const finished = await scriptUsec(redis);
  // Every command, those run inside the scripts included (the INFO calls above are a handful).
  const calls = putCalls + (await commandCalls(redis)) - beforeReports;
  return { putUs: put / jobs, finishUs: (finished - put) / jobs, commands: calls / jobs };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      producers: { type: 'string', default: '10,1000,10000' },
      consumers: { type: 'string', default: '2,20,200' },
      checks: { type: 'string', default: '300' },
      seconds: { type: 'string', default: '10' },
      tail: { type: 'string', default: '1000' },
      jobs: { type: 'string', default: '20000' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const list = (s: string) => s.split(',').map(Number);
  const binary = findRedisServer(process.env.PATH ?? '');
  if (!binary) throw new Error(NO_REDIS_SERVER_MESSAGE);
  const server = await startRedisServer({ binary });
  const redis = new Redis(server.url, { maxRetriesPerRequest: null });
  const checks = Number(values.checks);
  const tail = Number(values.tail);
  const result: {
    perJob: { putUs: number; finishUs: number; totalUs: number; commands: number };
    checkCost: { producers: number; usecPerCheck: number; commandsPerCheck: number }[];
    heartbeats: {
      consumers: number;
      producers: number;
      redisCpuPercent: number;
      heartbeatsPerSecond: number;
    }[];
  } = {
    perJob: { putUs: 0, finishUs: 0, totalUs: 0, commands: 0 },
    checkCost: [],
    heartbeats: [],
  };
  try {
    const repeats: Awaited<ReturnType<typeof perJobCost>>[] = [];
    for (let i = 0; i < 5; i++) repeats.push(await perJobCost(redis, Number(values.jobs)));
    const median = (f: (r: (typeof repeats)[number]) => number) =>
      Math.round(repeats.map(f).sort((a, b) => a - b)[2]! * 100) / 100;
    const putUs = median((r) => r.putUs);
    const finishUs = median((r) => r.finishUs);
    const totalUs = median((r) => r.putUs + r.finishUs);
    const commands = median((r) => r.commands);
    result.perJob = { putUs, finishUs, totalUs, commands };
    console.log(
      `per job, batches of ${BATCH} (median of 5): put (stored and acknowledged) ${putUs} µs, finish report ${finishUs} µs of Redis; ${totalUs} µs in all, ${commands} Redis commands per job`,
    );
    for (const producers of list(values.producers)) {
      await resetRedis(redis);
      const run = await prepareRun(redis, `check-${producers}`, producers, tail);
      await run.tryJoin();
      await redis.config('RESETSTAT');
      for (let i = 0; i < checks; i++) await run.tryJoin();
      const { usec, calls } = await protocolUsec(redis);
      result.checkCost.push({ producers, usecPerCheck: usec / checks, commandsPerCheck: calls / checks });
      console.log(
        `join check, ${producers} producers done, ${tail} jobs open: ${(usec / checks).toFixed(1)} µs of Redis per check (${(calls / checks).toFixed(1)} calls)`,
      );
    }
    const producers = Math.max(...list(values.producers));
    for (const consumers of list(values.consumers)) {
      await resetRedis(redis);
      const run = await prepareRun(redis, `beats-${consumers}`, producers, tail);
      const clients = Array.from({ length: Math.min(consumers, 50) }, () => new Redis(server.url));
      const stores = Array.from(
        { length: consumers },
        (_, i) => new RunStore(clients[i % clients.length]!, 'bench', run.runId),
      );
      const seconds = Number(values.seconds);
      const stop = Date.now() + seconds * 1000;
      const cpuBefore = await cpuSeconds(redis);
      let beats = 0;
      // Each consumer heartbeats once a second (HEARTBEAT_MS=1000), spread over the second.
      await Promise.all(
        stores.map(async (store, i) => {
          await sleep((1000 * i) / consumers);
          const record: ConsumerRecord = {
            id: `c${i}`,
            host: 'bench',
            pid: i,
            concurrency: 10,
            state: 'idle',
            jobsDone: 0,
            jobsFailed: 0,
            current: [],
            startedAt: Date.now(),
            heartbeatAt: Date.now(),
          };
          while (Date.now() < stop) {
            const started = Date.now();
            await store.saveConsumer(record);
            await store.tryJoin();
            beats++;
            await sleep(Math.max(0, 1000 - (Date.now() - started)));
          }
        }),
      );
      const cpu = ((await cpuSeconds(redis)) - cpuBefore) / seconds;
      clients.forEach((c) => c.disconnect());
      result.heartbeats.push({
        consumers,
        producers,
        redisCpuPercent: cpu * 100,
        heartbeatsPerSecond: beats / seconds,
      });
      console.log(
        `${consumers} consumers heartbeating, ${producers} producers, ${tail} jobs open: Redis CPU ${(cpu * 100).toFixed(1)} % of a core (${(beats / seconds).toFixed(0)} heartbeats/s)`,
      );
    }
  } finally {
    redis.disconnect();
    await server.stop();
  }
  const out = values.out ?? resolve(projectRoot, 'bench', 'results', `join-cost-${Date.now()}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(result, null, 2));
  console.log(`wrote ${out}`);
}

await main();
