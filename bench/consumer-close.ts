import { parseArgs } from 'node:util';
import { startConsumer } from '../lib/consumer.js';
import { openProducer } from '../lib/producer.js';
import { defineJob } from '../shared/jobs/define.js';
import { z } from 'zod';
import { findRedisServer, NO_REDIS_SERVER_MESSAGE, startRedisServer } from '../shared/redis-server.js';

const USAGE = `Usage: npm run bench:close -- [options]

How long a consumer's stop() takes when Redis stops answering (its process paused with SIGSTOP, so
connections stay open and commands simply get no reply): the time until its job resources are
disposed, and until \`exited\` resolves. Starts its own redis-server per repeat.

  --repeats N    repeats (default 3; the median is shown)
  --limit-ms N   give up waiting after this long (default 30000)
  -h, --help`;

type Sample = { disposedMs: number | null; exitedMs: number | null };

async function once(binary: string, limitMs: number): Promise<Sample> {
  const server = await startRedisServer({ binary });
  let disposedAt: number | null = null;
  let ran = false;
  // A job type with resources, so the close's last step (disposing them) can be timed.
  const held = defineJob({
    name: 'held',
    schema: z.object({}),
    createResources: () => ({}),
    disposeResources: () => void (disposedAt = Date.now()),
    handler: () => Promise.resolve((ran = true)),
  });
  const consumer = await startConsumer({
    redisUrl: server.url,
    queue: 'close-bench',
    runId: 'r',
    jobs: [held],
    heartbeatMs: 100,
    leaseMs: 3_000,
  });
  // One job run, so the consumer holds resources to dispose and has a finish to record.
  const producer = await openProducer({
    redisUrl: server.url,
    queue: 'close-bench',
    runId: 'r',
    producers: 2,
    jobs: [held],
  });
  await producer.put('held', {});
  while (!ran) await new Promise((r) => setTimeout(r, 10));
  await producer.close();
  const pid = server.process.pid!;
  process.kill(pid, 'SIGSTOP');
  const start = Date.now();
  let exitedAt: number | null = null;
  void consumer.stop('bench').then(() => (exitedAt = Date.now()));
  const deadline = start + limitMs;
  while (exitedAt === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const seen = { disposedAt, exitedAt };
  process.kill(pid, 'SIGCONT');
  await Promise.race([consumer.exited, new Promise((r) => setTimeout(r, 15_000))]);
  await server.stop();
  return {
    disposedMs: seen.disposedAt === null ? null : seen.disposedAt - start,
    exitedMs: seen.exitedAt === null ? null : seen.exitedAt - start,
  };
}

const median = (xs: (number | null)[]): string => {
  const known = xs.filter((x): x is number => x !== null).sort((a, b) => a - b);
  if (known.length < xs.length) return `not within the limit in ${xs.length - known.length} of ${xs.length}`;
  return `${known[Math.floor(known.length / 2)]} ms`;
};

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      repeats: { type: 'string', default: '3' },
      'limit-ms': { type: 'string', default: '30000' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return void console.log(USAGE);
  const repeats = Number(values.repeats);
  const limitMs = Number(values['limit-ms']);
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error('--repeats: a whole number of at least 1');
  if (!Number.isInteger(limitMs) || limitMs < 100)
    throw new Error('--limit-ms: a whole number of at least 100');
  const binary = findRedisServer(process.env.PATH ?? '');
  if (!binary) throw new Error(NO_REDIS_SERVER_MESSAGE);
  const samples: Sample[] = [];
  for (let i = 0; i < repeats; i++) {
    const s = await once(binary, limitMs);
    console.log(
      `repeat ${i + 1}: disposed ${s.disposedMs ?? 'never'} ms, exited ${s.exitedMs ?? 'never'} ms`,
    );
    samples.push(s);
  }
  console.log(
    `consumer stop() with Redis paused (median of ${repeats}): resources disposed ${median(samples.map((s) => s.disposedMs))}, exited ${median(samples.map((s) => s.exitedMs))}`,
  );
}

await main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
