import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { openProducer, startConsumer } from '../index.js';
import { traceAttempts } from '../consumers/attempt-span.js';
import { defineJob } from '../shared/jobs/define.js';
import { createLogger } from '../shared/logger.js';
import { findRedisServer, NO_REDIS_SERVER_MESSAGE, startRedisServer } from '../shared/redis-server.js';
import { startTracing } from '../shared/tracing/start-tracing.js';
import { tracePut } from '../shared/tracing/put-span.js';

const USAGE = `Usage: npm run bench:trace -- [options]

What tracing costs: whole runs (a producer putting in batches, a consumer at concurrency 10, the
join) in one process against a private redis-server, with tracing off and on (every job sampled,
spans exported over OTLP/HTTP to a sink in this process), interleaved in the same run; medians of
wall time and process CPU per job. Then the hooks alone with tracing off, per call, against the
bare function they wrap.

  --jobs N     jobs per run (default 5000)
  --repeats N  runs per mode (default 5)
  --protocol P http/protobuf (default, the spec's) or http/json
  -h, --help`;

const noop = defineJob({
  name: 'noop',
  schema: z.strictObject({ i: z.number() }),
  handler: () => Promise.resolve(1),
});

const median = (xs: readonly number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

/** An OTLP/HTTP endpoint that accepts and counts spans' bytes, like a collector that drops them. */
async function startSink(): Promise<{ url: string; bytes: () => number; close(): Promise<void> }> {
  let bytes = 0;
  const server = createServer((req, res) => {
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    bytes: () => bytes,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

async function oneRun(
  redisUrl: string,
  runId: string,
  jobs: number,
): Promise<{ wallUs: number; cpuUs: number }> {
  const where = { redisUrl, queue: 'trace-bench' };
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const consumer = await startConsumer({ ...where, runId, jobs: [noop], concurrency: 10 });
  const producer = await openProducer({ ...where, runId, jobs: [noop] });
  for (let i = 0; i < jobs; i += 100)
    await producer.putMany(
      Array.from({ length: Math.min(100, jobs - i) }, (_, k) => ({ type: 'noop', payload: { i: i + k } })),
    );
  await producer.done();
  await consumer.exited;
  await producer.close();
  const wall = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  return { wallUs: (wall * 1000) / jobs, cpuUs: (cpu.user + cpu.system) / jobs };
}

/** ns per call of `f` (best of 5 batches of `n` calls). */
async function perCall(n: number, f: () => Promise<unknown>): Promise<number> {
  let best = Infinity;
  for (let b = 0; b < 5; b++) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) await f();
    best = Math.min(best, ((performance.now() - t0) * 1e6) / n);
  }
  return best;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      jobs: { type: 'string', default: '5000' },
      repeats: { type: 'string', default: '5' },
      protocol: { type: 'string', default: 'http/protobuf' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return void console.log(USAGE);
  const jobs = Number(values.jobs);
  const repeats = Number(values.repeats);
  if (!(Number.isInteger(jobs) && jobs > 0))
    throw new Error(`--jobs: "${values.jobs}" is not a positive whole number`);
  if (!(Number.isInteger(repeats) && repeats > 0))
    throw new Error(`--repeats: "${values.repeats}" is not a positive whole number`);
  const protocol = values.protocol;
  if (protocol !== 'http/protobuf' && protocol !== 'http/json')
    throw new Error(`--protocol: "${protocol}" is not http/protobuf or http/json`);
  const binary = findRedisServer(process.env.PATH ?? '');
  if (!binary) throw new Error(NO_REDIS_SERVER_MESSAGE);
  const server = await startRedisServer({ binary });
  const sink = await startSink();
  // The exporter reads its endpoint from the environment, as in a real process.
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = sink.url;
  const log = createLogger({ level: 'warn', service: 'bench' });
  const results: Record<'off' | 'on', { wallUs: number; cpuUs: number }[]> = { off: [], on: [] };
  let exported = 0;
  try {
    await oneRun(server.url, 'warm-up', Math.min(jobs, 1000));
    for (let r = 0; r < repeats; r++) {
      // Alternate which mode goes first, so drift (JIT, Redis memory) does not favour one.
      for (const mode of r % 2 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
        const before = sink.bytes();
        const tracing =
          mode === 'on'
            ? await startTracing({ serviceName: 'bench', sampler: 'always_on', ratio: 1, protocol }, log)
            : null;
        results[mode].push(await oneRun(server.url, `${mode}-${r}`, jobs));
        await tracing?.shutdown();
        if (mode === 'on') exported += sink.bytes() - before;
      }
      const redis = new Redis(server.url);
      await redis.flushall();
      redis.disconnect();
    }
    const off = {
      wall: median(results.off.map((x) => x.wallUs)),
      cpu: median(results.off.map((x) => x.cpuUs)),
    };
    const on = { wall: median(results.on.map((x) => x.wallUs)), cpu: median(results.on.map((x) => x.cpuUs)) };
    console.log(
      `${jobs} jobs per run, ${repeats} runs per mode, medians (producer and consumer in one process):`,
    );
    console.log(`  tracing off: ${off.wall.toFixed(1)} µs wall/job, ${off.cpu.toFixed(1)} µs CPU/job`);
    console.log(
      `  tracing on:  ${on.wall.toFixed(1)} µs wall/job, ${on.cpu.toFixed(1)} µs CPU/job  (every job sampled; ` +
        `${(exported / repeats / jobs).toFixed(0)} bytes of OTLP (${protocol}) exported per job)`,
    );
    console.log(
      `  cost of tracing on: +${(on.cpu - off.cpu).toFixed(1)} µs CPU/job (${(((on.cpu - off.cpu) / off.cpu) * 100).toFixed(0)} %), ` +
        `+${(on.wall - off.wall).toFixed(1)} µs wall/job`,
    );

    // The hooks with tracing off: one boolean check each, against the bare function.
    const job = { opts: {}, data: {}, attemptsMade: 0, timestamp: 0, name: 'noop' } as never;
    const bare = () => Promise.resolve(1);
    const wrapped = traceAttempts('q', bare);
    const run = { client: null as never, queue: 'q', runId: 'r', keys: { meta: 'm' } };
    const n = 1_000_000;
    const bareNs = await perCall(n, () => bare());
    const attemptNs = await perCall(n, () => wrapped(job));
    const putNs = await perCall(n, () => tracePut(run, { shard: 0, jobs: 1, producer: 'p' }, '{}', bare));
    console.log('hooks with tracing off (ns per call, best of 5 x 1M):');
    console.log(
      `  bare async call ${bareNs.toFixed(1)}, job-attempt hook ${attemptNs.toFixed(1)}, put hook ${putNs.toFixed(1)}`,
    );
    const addedNs = attemptNs - bareNs + (putNs - bareNs) / 100;
    console.log(
      addedNs <= 0
        ? `  added per job: nothing measurable (${addedNs.toFixed(1)} ns, below the loop's noise)`
        : `  added per job: ${addedNs.toFixed(1)} ns (the put hook runs once per batch of 100), ` +
            `${((addedNs / 1000 / off.cpu) * 100).toFixed(3)} % of the ${off.cpu.toFixed(0)} µs CPU a job costs`,
    );
  } finally {
    await sink.close();
    await server.stop();
  }
}

await main();
