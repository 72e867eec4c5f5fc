import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { createProducer } from '../producers/producer.js';
import { loadJobRegistry } from '../shared/jobs/index.js';
import { jobOptions, openQueue } from '../shared/queue.js';
import { findRedisServer, NO_REDIS_SERVER_MESSAGE, startRedisServer } from '../shared/redis-server.js';
import { projectRoot, roleCommand } from '../shared/roles.js';
import { RunStore } from '../shared/run/run-store.js';
import { killAll, spawnChild, within, type BenchChild } from './proc.js';
import { percentile } from './stats.js';

const USAGE = `Usage: npm run bench:cancel -- [options]

Cancel latency across processes: jobs run on consumer processes, this process cancels them one at
a time with run.cancelJob(id), and each handler logs when its signal aborted. Reports request →
abort (p50, p99, max) over all cancels. Starts its own redis-server unless --redis is given.

  --cancels N       cancels to measure (default 200)
  --consumers N     consumer processes (default 2)
  --concurrency N   jobs at once per consumer (default 10)
  --redis URL       use this Redis instead of starting one
  --out FILE        JSON output (default bench/results/cancel-latency-<time>.json)
  -h, --help`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cancels: { type: 'string', default: '200' },
      consumers: { type: 'string', default: '2' },
      concurrency: { type: 'string', default: '10' },
      redis: { type: 'string' },
      out: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  const cancels = Number(values.cancels);
  const consumerCount = Number(values.consumers);
  const concurrency = Number(values.concurrency);
  for (const [flag, v] of [
    ['--cancels', cancels],
    ['--consumers', consumerCount],
    ['--concurrency', concurrency],
  ] as const)
    if (!Number.isInteger(v) || v < 1) throw new Error(`${flag}: a whole number of at least 1`);

  let server: Awaited<ReturnType<typeof startRedisServer>> | undefined;
  if (!values.redis) {
    const binary = findRedisServer(process.env.PATH ?? '');
    if (!binary) throw new Error(NO_REDIS_SERVER_MESSAGE);
    server = await startRedisServer({ binary });
  }
  const url = values.redis ?? server!.url;
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  const queue = `bench-cancel-${Date.now()}`;
  const runId = 'r';
  const jobModules = './bench/cancel-job.ts';
  const q = openQueue(queue, redis);
  const consumers: BenchChild[] = [];
  try {
    const run = new RunStore(redis, queue, runId);
    await run.create(1, 60_000, 60_000);
    await run.registerProducer('bench', { host: 'bench', pid: process.pid }, 60_000);
    const registry = await loadJobRegistry([jobModules], projectRoot);
    const producer = createProducer({
      run,
      registry,
      producerId: 'bench',
      jobOptions: jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 0, keepFailed: 0 }),
    });
    const started = new Map<string, number>();
    const aborted = new Map<string, number>();
    const ready = new Set<string>();
    const { command, args } = roleCommand('consumer', false);
    for (let i = 0; i < consumerCount; i++) {
      const c = spawnChild(
        `consumer-${i}`,
        command,
        args,
        {
          REDIS_URL: url,
          QUEUE: queue,
          RUN_ID: runId,
          CONSUMER_ID: `c${i}`,
          CONCURRENCY: String(concurrency),
          JOB_MODULES: jobModules,
          METRICS_PORT: '0',
          LOG_LEVEL: 'info',
        },
        projectRoot,
      );
      // Logs go to stderr (stdout is for data): read the handlers' lines there.
      createInterface({ input: c.child.stderr! }).on('line', (raw) => {
        if (!raw.includes('bench job') && !raw.includes('consumer ready')) return;
        const line = JSON.parse(raw) as {
          msg?: string;
          jobId?: string;
          startedAt?: number;
          abortedAt?: number;
        };
        if (line.msg === 'consumer ready') ready.add(c.label);
        if (line.msg === 'bench job started') started.set(String(line.jobId), Number(line.startedAt));
        if (line.msg === 'bench job aborted') aborted.set(String(line.jobId), Number(line.abortedAt));
      });
      consumers.push(c);
    }
    await within(
      'consumers to start',
      30_000,
      (async () => {
        while (ready.size < consumers.length) await new Promise((r) => setTimeout(r, 20));
      })(),
    );

    const slots = consumerCount * concurrency;
    const latencies: number[] = [];
    const requestMs: number[] = [];
    let done = 0;
    while (done < cancels) {
      const n = Math.min(slots, cancels - done);
      const ids = await producer.putMany(
        Array.from({ length: n }, () => ({ type: 'bench-wait', payload: {} })),
      );
      await producer.flush();
      await within(
        'a batch of jobs to start',
        30_000,
        (async () => {
          while (!ids.every((id) => started.has(id))) await new Promise((r) => setTimeout(r, 10));
        })(),
      );
      for (const id of ids) {
        const at = Date.now();
        const r = await run.cancelJob(id);
        requestMs.push(Date.now() - at);
        if (r.outcome !== 'signalled') throw new Error(`cancel of running job ${id}: ${r.outcome}`);
        await within(
          `job ${id} to see its abort`,
          10_000,
          (async () => {
            while (!aborted.has(id)) await new Promise((r) => setTimeout(r, 1));
          })(),
        );
        latencies.push(aborted.get(id)! - at);
      }
      done += n;
    }
    await producer.done();
    await within('consumers to exit after the join', 30_000, Promise.all(consumers.map((c) => c.exit)));
    const figure = (p: number) => percentile(latencies, p) ?? NaN;
    const result = {
      cancels: latencies.length,
      consumers: consumerCount,
      concurrency,
      requestToAbortMs: { p50: figure(50), p99: figure(99), max: Math.max(...latencies) },
      cancelJobCallMs: { p50: percentile(requestMs, 50), p99: percentile(requestMs, 99) },
      at: new Date().toISOString(),
    };
    console.log(
      `${result.cancels} cancels of running jobs on ${consumerCount} consumer processes: request → abort p50 ${result.requestToAbortMs.p50} ms, p99 ${result.requestToAbortMs.p99} ms, max ${result.requestToAbortMs.max} ms (cancelJob call p50 ${result.cancelJobCallMs.p50} ms, p99 ${result.cancelJobCallMs.p99} ms)`,
    );
    const out = values.out ?? resolve(projectRoot, 'bench', 'results', `cancel-latency-${Date.now()}.json`);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, JSON.stringify(result, null, 2));
    console.log(`wrote ${out}`);
  } finally {
    await killAll();
    await q.close();
    redis.disconnect();
    await server?.stop();
  }
}

await main();
