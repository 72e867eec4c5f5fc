/**
 * `npm run bench:drain`: a backlog already waiting, one consumer process draining it. No producer
 * runs during the measurement, so the figures are the consumer's own cost per job (and what it
 * makes Redis do), conveyor's against a bare BullMQ Worker's.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { bullKeyPrefix } from '../shared/keys.js';
import { startRedisServer } from '../shared/redis-server.js';
import { prepareBench, resultsFile } from './build.js';
import { contenders, type ContenderName, type RunSpec } from './contenders.js';
import { count } from './options.js';
import { cpuMs, killAll, sleep, within } from './proc.js';
import { cpuSeconds, resetRedis } from './redis-info.js';
import { ratio, spread } from './stats.js';

const USAGE = `Usage: npm run bench:drain -- [options]

A backlog of no-op jobs waits in the queue (put by the contender's own producer, which then exits);
one consumer process drains it. Measured from the first job completed to the queue empty: jobs/s,
the consumer's CPU per job and Redis's. conveyor against raw BullMQ, in rotated order per repeat.

  --jobs N          jobs in the backlog (default 20000)
  --concurrency N   the consumer's concurrency (default 100)
  --repeats N       repeats of each contender (default 5)
  --out FILE        JSON output (default bench/results/drain-<time>.json)
  --no-build        skip compiling to dist/ (use what is there)
  -h, --help`;

type DrainOptions = {
  jobs: number;
  concurrency: number;
  repeats: number;
  out: string | null;
  build: boolean;
};

function parseDrainArgs(argv: string[]): DrainOptions | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      jobs: { type: 'string' },
      concurrency: { type: 'string' },
      repeats: { type: 'string' },
      out: { type: 'string' },
      'no-build': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  return {
    jobs: count(values.jobs, '--jobs') ?? 20_000,
    concurrency: count(values.concurrency, '--concurrency') ?? 100,
    repeats: count(values.repeats, '--repeats') ?? 5,
    out: values.out ?? null,
    build: !values['no-build'],
  };
}

type DrainRun = {
  contender: ContenderName;
  repeat: number;
  jobsPerSec: number;
  consumerCpuUsPerJob: number;
  redisCpuUsPerJob: number;
};

/** Waiting plus active jobs of the queue (BullMQ's lists under the `{queue}` prefix both contenders use). */
async function left(redis: Redis, queue: string): Promise<number> {
  const k = bullKeyPrefix(queue);
  const [wait, active] = await Promise.all([redis.llen(`${k}wait`), redis.llen(`${k}active`)]);
  return wait + active;
}

async function drainOnce(
  name: ContenderName,
  spec: RunSpec,
  redis: Redis,
  repeat: number,
): Promise<DrainRun> {
  const c = contenders[name];
  await resetRedis(redis);
  try {
    const producer = c.startProducer(spec);
    const put = await within(`${name} producer`, 120_000, producer.exit);
    if (put.code !== 0) throw new Error(`${name} producer exited ${put.code}:\n${producer.stderr()}`);
    if ((await left(redis, spec.queue)) !== spec.jobs)
      throw new Error(`${name}: the backlog is not ${spec.jobs} jobs`);
    const consumer = c.startConsumer(spec, 1);
    const completed = `${bullKeyPrefix(spec.queue)}completed`;
    // The clock starts at the first completion: the consumer's start-up is not part of draining.
    await within(
      `${name} consumer's first job`,
      60_000,
      (async () => {
        while ((await redis.zcard(completed)) === 0) await sleep(2);
      })(),
    );
    const cpu0 = cpuMs(consumer.pid) ?? 0;
    const redis0 = await cpuSeconds(redis);
    const t0 = performance.now();
    // Jobs completed before the clock started are few (one poll) and counted out below.
    const before = await redis.zcard(completed);
    await within(
      `${name} drain`,
      300_000,
      (async () => {
        while ((await left(redis, spec.queue)) > 0) await sleep(10);
      })(),
    );
    const ms = performance.now() - t0;
    const cpu1 = cpuMs(consumer.pid) ?? cpu0;
    const redis1 = await cpuSeconds(redis);
    const drained = spec.jobs - before;
    return {
      contender: name,
      repeat,
      jobsPerSec: Math.round((drained / ms) * 1_000),
      consumerCpuUsPerJob: Math.round(((cpu1 - cpu0) * 1_000) / drained),
      redisCpuUsPerJob: Math.round(((redis1 - redis0) * 1e6) / drained),
    };
  } finally {
    await killAll();
  }
}

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const prepared = prepareBench('bench:drain', argv, env, parseDrainArgs, USAGE);
  if (typeof prepared === 'number') return prepared;
  const { opts, binary } = prepared;
  const outFile = resultsFile(opts.out, 'drain-');
  const server = await startRedisServer({ binary });
  const redis = new Redis(server.url, { maxRetriesPerRequest: null });
  const names: ContenderName[] = ['conveyor', 'bullmq'];
  const runs: DrainRun[] = [];
  try {
    for (let r = 0; r < opts.repeats; r++) {
      for (let i = 0; i < names.length; i++) {
        const name = names[(i + r) % names.length]!;
        const spec: RunSpec = {
          redisUrl: server.url,
          queue: 'drain',
          runId: `drain-${r}-${name}`,
          jobs: opts.jobs,
          batchSize: 1_000,
          intervalMs: 0,
          concurrency: opts.concurrency,
          consumers: 1,
          keepCompleted: 1_000,
        };
        const run = await drainOnce(name, spec, redis, r);
        runs.push(run);
        process.stderr.write(`${name} #${r + 1}: ${JSON.stringify(run)}\n`);
      }
    }
  } finally {
    redis.disconnect();
    await server.stop();
  }
  const median = (name: ContenderName, f: (r: DrainRun) => number) =>
    spread(runs.filter((r) => r.contender === name).map(f))?.median ?? null;
  const figures = [
    ['jobs/s', (r: DrainRun) => r.jobsPerSec],
    ['consumer CPU µs per job', (r: DrainRun) => r.consumerCpuUsPerJob],
    ['Redis CPU µs per job', (r: DrainRun) => r.redisCpuUsPerJob],
  ] as const;
  // The machine's speed drifts between repeats: each repeat's own ratio (both contenders ran
  // back to back) is steadier than the ratio of the medians.
  const pairedRatio = (f: (r: DrainRun) => number) =>
    spread(
      Array.from({ length: opts.repeats }, (_, r) => {
        const of = (n: ContenderName) => f(runs.find((x) => x.contender === n && x.repeat === r)!);
        return of('conveyor') / of('bullmq');
      }),
    )?.median ?? null;
  const rows = figures.map(([label, f]) => {
    const [a, b] = names.map((n) => median(n, f));
    const paired = pairedRatio(f);
    return { figure: label, conveyor: a, bullmq: b, ratio: paired === null ? null : ratio(paired, 1) };
  });
  const lines = [
    `Drain: ${opts.jobs} jobs waiting, one consumer at concurrency ${opts.concurrency}; medians of ${opts.repeats}`,
    '',
    '| figure | conveyor | raw BullMQ | conveyor ÷ BullMQ (median of each repeat’s ratio) |',
    '| --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.figure} | ${r.conveyor} | ${r.bullmq} | ${r.ratio} |`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  writeFileSync(outFile, JSON.stringify({ opts, runs, summary: rows }, null, 2));
  process.stdout.write(`Results: ${outFile}\n`);
  return 0;
}

process.exitCode = await main(process.argv.slice(2), process.env);
