/**
 * `npm run bench:jobs-file`: a producer process putting a jobs file (JOBS_FILE) into a private
 * Redis, for files of growing length: lines/s and the producer's peak RSS. A producer that streams
 * its file has the same peak whatever the length; one that read it whole would grow with it.
 */
import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { findRedisServer, startRedisServer } from '../shared/redis-server.js';
import { projectRoot } from '../shared/roles.js';
import { killAll, rssMb, sleep, spawnChild } from './proc.js';
import { count } from './options.js';

const USAGE = `Usage: npm run bench:jobs-file -- [--lines 20000,200000] [--repeats 3] [--heap-mb N]

Writes a file of N sleep jobs (one JSON object per line) per size, and times one producer process
putting it into a fresh private Redis (no consumer): lines/s and the producer's peak RSS, medians.
--heap-mb caps the producer's V8 heap (--max-old-space-size): a producer that held its lines would
run out of memory under a cap its file does not fit in.`;

async function writeJobsFile(path: string, lines: number): Promise<void> {
  const out = createWriteStream(path);
  for (let i = 0; i < lines; i++) {
    const line = `{"type":"sleep","payload":{"value":${i},"ms":0}}\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    strict: true,
    options: {
      lines: { type: 'string' },
      repeats: { type: 'string' },
      'heap-mb': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  const sizes = (values.lines ?? '20000,200000').split(',').map((s) => count(s, '--lines')!);
  const repeats = count(values.repeats, '--repeats') ?? 3;
  const heapMb = count(values['heap-mb'], '--heap-mb');
  const binary = findRedisServer(process.env.PATH ?? '');
  if (!binary) throw new Error('bench:jobs-file needs a redis-server binary on PATH');
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-jobs-file-'));
  const server = await startRedisServer({ binary, args: ['--maxmemory-policy', 'noeviction'] });
  const redis = new Redis(server.url);
  try {
    process.stdout.write(
      `lines      file MB   lines/s   peak RSS MB (producer${heapMb ? `, heap capped at ${heapMb} MB` : ''})\n`,
    );
    for (const lines of sizes) {
      const file = join(dir, `jobs-${lines}.ndjson`);
      await writeJobsFile(file, lines);
      const rates: number[] = [];
      const peaks: number[] = [];
      for (let r = 0; r < repeats; r++) {
        await redis.flushall();
        const started = Date.now();
        const p = spawnChild(
          'producer',
          process.execPath,
          [
            ...(heapMb ? [`--max-old-space-size=${heapMb}`] : []),
            '--import',
            'tsx',
            join(projectRoot, 'producers/main.ts'),
          ],
          {
            REDIS_URL: server.url,
            RUN_ID: `file-${r}`,
            JOBS_FILE: file,
            LOG_LEVEL: 'warn',
            METRICS_PORT: '0',
          },
          projectRoot,
        );
        let peak = 0;
        while (!p.exited()) {
          peak = Math.max(peak, rssMb(p.pid) ?? 0);
          await sleep(20);
        }
        const { code, at } = await p.exit;
        if (code !== 0) throw new Error(`producer exited ${code}: ${p.stderr()}`);
        rates.push(lines / ((at - started) / 1000));
        peaks.push(peak);
      }
      const mb = statSync(file).size / 1024 / 1024;
      process.stdout.write(
        `${String(lines).padEnd(10)} ${mb.toFixed(1).padStart(7)}   ${median(rates).toFixed(0).padStart(7)}   ${median(peaks).toFixed(0).padStart(5)} (${peaks.map((x) => x.toFixed(0)).join(', ')})\n`,
      );
      rmSync(file);
    }
  } finally {
    await killAll();
    redis.disconnect();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
