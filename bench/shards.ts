import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { createLogger } from '../shared/logger.js';
import { closeRedis, createRedis, type RedisClient } from '../shared/redis.js';
import { startRedisCluster, startRedisServer, type RedisServerHandle } from '../shared/redis-server.js';
import { queueShards, shardJobPrefix } from '../shared/keys.js';
import { projectRoot } from '../shared/roles.js';
import { readRunStatus } from '../shared/run/status.js';
import { prepareBench, resultsFile } from './build.js';
import { barChartSvg } from './chart.js';
import { conveyorScript, noopJobModule, waitForIdleConsumers } from './contenders.js';
import { killAll, sleep, spawnChild, within, type BenchChild } from './proc.js';
import { count } from './options.js';
import { cpuSeconds } from './redis-info.js';
import { spread, type Spread } from './stats.js';

const USAGE = `Usage: npm run bench:shards -- [options]

Jobs/s of one conveyor run on a single Redis and on a local 3-master Redis Cluster with the queue
spread over 1, 2 and 3 shards, with each master's Redis CPU.

  --jobs N          jobs per run (default 30000)
  --repeats N       runs of each setup, order rotated (default 3)
  --producers N     producer processes (default 2)
  --consumers N     consumer processes (default 3)
  --concurrency N   per consumer process (default 50)
  --out FILE        JSON output (default bench/results/shards-<time>.json)
  --docs            also write docs/bench-shards.svg and docs/bench-shards.json
  --no-build        skip compiling to dist/ (use what is there)
  -h, --help`;

type Setup = { label: string; cluster: boolean; shards: number };
const SETUPS: Setup[] = [
  { label: 'single Redis', cluster: false, shards: 1 },
  { label: 'cluster, 1 shard', cluster: true, shards: 1 },
  { label: 'cluster, 2 shards', cluster: true, shards: 2 },
  { label: 'cluster, 3 shards', cluster: true, shards: 3 },
];

type Options = {
  jobs: number;
  repeats: number;
  producers: number;
  consumers: number;
  concurrency: number;
  out: string | null;
  docs: boolean;
  build: boolean;
};

type RunRecord = {
  setup: string;
  repeat: number;
  ok: boolean;
  error?: string;
  jobsPerSec?: number;
  /** Each Redis server's CPU over the run, in % of one core (masters only on the cluster). */
  redisCpuPct?: number[];
  /** The whole machine's CPU busy over the run, % of all cores. */
  machineCpuPct?: number;
};

/** A Redis server the harness resets between runs and reads CPU time from. */
type Server = { port: number; admin: Redis };

async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  const prepared = prepareBench('bench:shards', argv, env, parseOptions, USAGE);
  if (typeof prepared === 'number') return prepared;
  const { opts, binary } = prepared;
  const started = Date.now();
  const say = (msg: string) =>
    process.stderr.write(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${msg}\n`);

  const single = await startRedisServer({ binary });
  const cluster = await startRedisCluster({ binary, masters: 3 });
  const admin = (h: RedisServerHandle): Server => ({
    port: h.port,
    admin: new Redis(h.url, { maxRetriesPerRequest: null }),
  });
  const singleServer = admin(single);
  const masters = cluster.nodes.map(admin);
  const quiet = createLogger({ level: 'silent', service: 'bench' });
  const clusterClient = createRedis({ redisUrl: cluster.url, redisTlsCaFile: undefined }, quiet, 'bench');
  const singleClient = createRedis({ redisUrl: single.url, redisTlsCaFile: undefined }, quiet, 'bench');
  const stopAll = () => void killAll().finally(() => process.exit(130));
  process.once('SIGINT', stopAll);
  process.once('SIGTERM', stopAll);
  const runs: RunRecord[] = [];
  try {
    let seq = 0;
    for (let r = 0; r < opts.repeats; r++) {
      // Rotate the order per repeat so no setup always runs first (or last) on a noisy machine.
      const order = SETUPS.map((_, i) => SETUPS[(i + r) % SETUPS.length]!);
      for (const setup of order) {
        const servers = setup.cluster ? masters : [singleServer];
        const rec = await runOnce(opts, setup, r + 1, `s${++seq}`, {
          url: setup.cluster ? cluster.url : single.url,
          client: setup.cluster ? clusterClient : singleClient,
          servers,
        });
        runs.push(rec);
        say(
          `${setup.label} #${r + 1}: ${rec.ok ? `${rec.jobsPerSec} jobs/s, Redis CPU ${rec.redisCpuPct?.join('/')} %, machine ${rec.machineCpuPct} %` : `FAILED ${rec.error?.split('\n')[0]}`}`,
        );
      }
    }
  } finally {
    await killAll();
    await Promise.all([closeRedis(clusterClient), closeRedis(singleClient)]);
    for (const s of [singleServer, ...masters]) s.admin.disconnect();
    await Promise.all([single.stop(), cluster.stop()]);
  }

  const summary = SETUPS.map((setup) => {
    const ok = runs.filter((x) => x.setup === setup.label && x.ok);
    const cpuPerServer = (i: number) => spread(ok.map((x) => x.redisCpuPct?.[i] ?? 0));
    return {
      setup: setup.label,
      shards: setup.shards,
      runs: ok.length,
      jobsPerSec: spread(ok.map((x) => x.jobsPerSec ?? 0)),
      redisCpuPct: (setup.cluster ? [0, 1, 2] : [0]).map((i) => cpuPerServer(i)?.median ?? null),
      machineCpuPct: spread(ok.map((x) => x.machineCpuPct ?? 0))?.median ?? null,
    };
  });
  const base = summary[0]?.jobsPerSec?.median ?? null;
  const lines = [
    `conveyor jobs/s by shard count (${opts.jobs} jobs, ${opts.producers} producers, ${opts.consumers} consumers × ${opts.concurrency}, median of ${opts.repeats}; ${cpus().length} CPUs)`,
    '',
    '| setup | jobs/s (min–max) | vs single Redis | Redis CPU per server (% of a core) | machine CPU |',
    '| --- | --- | --- | --- | --- |',
    ...summary.map(
      (s) =>
        `| ${s.setup} | ${fmt(s.jobsPerSec)} | ${base && s.jobsPerSec ? (s.jobsPerSec.median / base).toFixed(2) : '–'} | ${s.redisCpuPct.map((c) => (c === null ? '–' : c)).join(' / ')} | ${s.machineCpuPct ?? '–'} % |`,
    ),
  ];
  const meta = {
    startedAt: new Date(started).toISOString(),
    durationS: Math.round((Date.now() - started) / 1000),
    command: `npm run bench:shards${argv.length ? ` -- ${argv.join(' ')}` : ''}`,
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? '?',
    options: opts,
  };
  const outFile = resultsFile(opts.out, 'shards-', new Date(started));
  const json = `${JSON.stringify({ meta, summary, runs }, null, 2)}\n`;
  writeFileSync(outFile, json);
  const svg = barChartSvg(
    'conveyor end-to-end jobs/s: single Redis vs a 3-master cluster by shard count',
    `${opts.jobs} jobs, ${opts.producers} producers, ${opts.consumers} consumers × ${opts.concurrency}, median of ${opts.repeats}; ${meta.cpus} CPUs`,
    [
      {
        title: 'jobs/s',
        groups: summary.map((s) => ({
          label: s.setup,
          bars: [{ name: 'conveyor', value: s.jobsPerSec?.median ?? null }],
        })),
      },
    ],
  );
  writeFileSync(outFile.replace(/\.json$/, '.svg'), svg);
  if (opts.docs) {
    writeFileSync(join(projectRoot, 'docs', 'bench-shards.svg'), svg);
    writeFileSync(join(projectRoot, 'docs', 'bench-shards.json'), json);
  }
  process.stdout.write(`${lines.join('\n')}\n\nResults: ${outFile}\nFinished in ${meta.durationS} s.\n`);
  return runs.every((x) => x.ok) ? 0 : 1;
}

/** One run: consumers up and idle, then the producers, until the run joins and every process exited. */
async function runOnce(
  opts: Options,
  setup: Setup,
  repeat: number,
  runId: string,
  target: { url: string; client: RedisClient; servers: Server[] },
): Promise<RunRecord> {
  const queue = 'bench';
  const base: RunRecord = { setup: setup.label, repeat, ok: false };
  try {
    for (const s of target.servers) {
      await s.admin.flushall('SYNC');
      await s.admin.script('FLUSH');
    }
    const env = {
      REDIS_URL: target.url,
      QUEUE: queue,
      SHARDS: String(setup.shards),
      RUN_ID: runId,
      PRODUCERS: String(opts.producers),
      JOB_MODULES: noopJobModule,
      LOG_LEVEL: 'warn',
    };
    const consumers: BenchChild[] = [];
    for (let i = 1; i <= opts.consumers; i++)
      consumers.push(
        spawnChild(
          `consumer-${i}`,
          process.execPath,
          [conveyorScript('consumers')],
          {
            ...env,
            CONSUMER_ID: `c${i}`,
            CONCURRENCY: String(opts.concurrency),
          },
          projectRoot,
        ),
      );
    await within('consumers to start', 60_000, waitForIdleConsumers(target.client, queue, runId, consumers));
    await sleep(300);
    const cpuBefore = await Promise.all(target.servers.map((s) => cpuSeconds(s.admin)));
    const machineBefore = machineCpu();
    const perProducer = Math.ceil(opts.jobs / opts.producers);
    const producers = Array.from({ length: opts.producers }, (_, i) =>
      spawnChild(
        `producer-${i + 1}`,
        process.execPath,
        [conveyorScript('producers')],
        {
          ...env,
          PRODUCER_ID: `p${i + 1}`,
          JOBS: String(perProducer),
          BATCH_SIZE: '1000',
          PRODUCE_INTERVAL_MS: '0',
          JOB_TYPE: 'noop',
          JOB_PAYLOAD: JSON.stringify({ value: 0, ms: 0 }),
          KEEP_COMPLETED: '1000',
        },
        projectRoot,
      ),
    );
    const all = [...producers, ...consumers];
    await within(
      `the run of ${opts.jobs} jobs`,
      120_000 + opts.jobs * 2,
      Promise.all(
        all.map(async (p) => {
          const { code, signal } = await p.exit;
          if (code !== 0)
            throw new Error(`${p.label} exited with ${signal ?? `code ${code}`}:\n${p.stderr()}`);
        }),
      ),
    );
    const machineAfter = machineCpu();
    const cpuAfter = await Promise.all(target.servers.map((s) => cpuSeconds(s.admin)));
    const status = await readRunStatus(target.client, queue, runId, 10_000);
    const total = perProducer * opts.producers;
    if (status?.join.state !== 'joined' || status.jobs.completed !== total)
      throw new Error(
        `run ${runId}: ${status?.jobs.completed ?? 0} of ${total} completed, ${status?.join.state ?? 'no run'}: ${JSON.stringify({ jobs: status?.jobs, totals: status?.join.totals, shards: status?.shards, producers: status?.producers.list })}`,
      );
    const firstAddAt = Math.min(...status.producers.list.map((p) => p.startedAt));
    const lastDoneAt = Math.max(
      ...(await Promise.all(
        queueShards(queue, setup.shards).map(async (sh) => {
          const newest = await target.client.zrevrange(`${shardJobPrefix(sh)}completed`, 0, 0, 'WITHSCORES');
          return Number(newest[1] ?? 0);
        }),
      )),
    );
    const seconds = (lastDoneAt - firstAddAt) / 1000;
    if (!(seconds > 0)) throw new Error(`no valid add/finish times (${firstAddAt} → ${lastDoneAt})`);
    // The servers' CPU over the whole measured stretch (consumers' exit included: a few ms).
    const wall = (machineAfter.at - machineBefore.at) / 1000;
    return {
      ...base,
      ok: true,
      jobsPerSec: Math.round(total / seconds),
      redisCpuPct: cpuAfter.map((c, i) => Math.round(((c - cpuBefore[i]!) / wall) * 100)),
      machineCpuPct: Math.round(
        (1 - (machineAfter.idle - machineBefore.idle) / (machineAfter.total - machineBefore.total)) * 100,
      ),
    };
  } catch (err) {
    return { ...base, ok: false, error: err instanceof Error ? err.message : String(err) };
  } finally {
    await killAll();
  }
}

/** The machine's CPU counters from /proc/stat (Linux): total and idle jiffies, and when read. */
function machineCpu(): { total: number; idle: number; at: number } {
  const first = readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '';
  const v = first.trim().split(/\s+/).slice(1).map(Number);
  return { total: v.reduce((a, b) => a + b, 0), idle: (v[3] ?? 0) + (v[4] ?? 0), at: Date.now() };
}

function fmt(s: Spread | null): string {
  return s ? `${s.median} (${s.min}–${s.max})` : '–';
}

function parseOptions(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      jobs: { type: 'string' },
      repeats: { type: 'string' },
      producers: { type: 'string' },
      consumers: { type: 'string' },
      concurrency: { type: 'string' },
      out: { type: 'string' },
      docs: { type: 'boolean', default: false },
      'no-build': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  return {
    jobs: count(values.jobs, '--jobs') ?? 30_000,
    repeats: count(values.repeats, '--repeats') ?? 3,
    producers: count(values.producers, '--producers') ?? 2,
    consumers: count(values.consumers, '--consumers') ?? 3,
    concurrency: count(values.concurrency, '--concurrency') ?? 50,
    out: values.out ?? null,
    docs: values.docs,
    build: !values['no-build'],
  };
}

process.exitCode = await main(process.argv.slice(2), process.env);
