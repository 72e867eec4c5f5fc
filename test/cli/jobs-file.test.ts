import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../shared/roles.js';
import { readRunStatus } from '../../shared/run/status.js';
import { queueShards, shardRunKeys } from '../../shared/keys.js';
import { FAST } from '../helpers/demo.js';
import { exitOf, spawnRole, spawnTracked } from '../helpers/processes.js';
import { redisUrl } from '../helpers/redis.js';
import { useTempDir } from '../helpers/temp-dir.js';
import { useTestQueue } from '../helpers/test-queue.js';

const sleepLine = (value: number, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ type: 'sleep', payload: { value, ms: 0 }, ...extra });

/** JOBS_FILE: a producer that puts one job per line of a file or of standard input. */
describe('a producer reading jobs from a file (JOBS_FILE)', () => {
  const dir = useTempDir('conveyor-jobs-');
  const ctx = useTestQueue();
  const env = (runId: string) => ({ ...FAST, REDIS_URL: redisUrl(), QUEUE: ctx.queue, RUN_ID: runId });

  it('puts each line as its own job, from standard input, and the run keeps them in line order', async () => {
    const file = join(dir.path, 'jobs.ndjson');
    // A blank line and Windows line ends are fine; one line brings its own key and time limit.
    writeFileSync(
      file,
      [
        sleepLine(10),
        '',
        sleepLine(20, { timeoutMs: 5_000 }),
        sleepLine(30, { key: 'z-last' }),
        sleepLine(40),
      ].join('\r\n') + '\n',
    );
    const consumer = spawnRole('consumer', env('lines'));
    const producer = spawnTracked(
      'producer',
      'sh',
      ['-c', `exec "${process.execPath}" --import tsx producers/main.ts < "${file}"`],
      { ...env('lines'), JOBS_FILE: '-', COLLECT_RESULTS: 'true', PRODUCER_ID: 'lines' },
      { cwd: projectRoot },
    );
    expect((await exitOf(producer)).code, producer.output()).toBe(0);
    expect((await exitOf(consumer)).code, consumer.output()).toBe(0);
    const status = await readRunStatus(ctx.redis, ctx.queue, 'lines', 3_000);
    expect(status?.jobs).toMatchObject({ produced: 4, completed: 4 });
    const results = spawnTracked(
      'status',
      process.execPath,
      ['--import', 'tsx', `${projectRoot}/scripts/status/main.ts`, '--run', 'lines', '--results', '--json'],
      { REDIS_URL: redisUrl(), QUEUE: ctx.queue },
    );
    expect((await exitOf(results)).code, results.output()).toBe(0);
    const list = JSON.parse(results.stdout()) as { jobId: string; value: unknown }[];
    // Default keys are l<line>.<hash> (lines 1, 3 and 5 here); a key of the line's own comes in key order.
    expect(list.map((r) => r.value)).toEqual([10, 20, 40, 30]);
    expect(list.map((r) => r.jobId.split('=')[1])).toEqual([
      expect.stringMatching(/^l1\.[0-9a-f]{16}$/),
      expect.stringMatching(/^l3\.[0-9a-f]{16}$/),
      expect.stringMatching(/^l5\.[0-9a-f]{16}$/),
      'z-last',
    ]);
  });

  it('a bad line stops the producer with exit 2, naming the line and what is wrong; nothing after it is put', async () => {
    const cases: [string, RegExp][] = [
      [
        sleepLine(1).replace('"ms":0', '"ms":"soon"'),
        /jobs\.ndjson, line 3: ms: Invalid input: expected number/,
      ],
      ['{"type": "sleep", "payload": ', /line 3: not JSON/],
      [sleepLine(1, { delay: 1000 }), /line 3: delay is not supported/],
      [sleepLine(1, { priority: 1 }), /line 3: priority is not supported/],
      [JSON.stringify({ type: 'nope', payload: {} }), /line 3: unknown job type "nope"/],
      [sleepLine(1, { tags: ['x'] }), /line 3: unknown field tags/],
    ];
    for (const [i, [bad, message]] of cases.entries()) {
      const file = join(dir.path, 'jobs.ndjson');
      writeFileSync(file, [sleepLine(1), sleepLine(2), bad, sleepLine(4)].join('\n'));
      const runId = `bad-${i}`;
      const p = spawnRole('producer', { ...env(runId), JOBS_FILE: file, BATCH_SIZE: '1' });
      expect((await exitOf(p)).code, p.output()).toBe(2);
      expect(p.output()).toMatch(message);
      expect((await readRunStatus(ctx.redis, ctx.queue, runId, 3_000))?.jobs.produced).toBe(2);
    }
    const missing = spawnRole('producer', { ...env('none'), JOBS_FILE: join(dir.path, 'missing.ndjson') });
    expect((await exitOf(missing)).code).toBe(2);
    expect(missing.output()).toMatch(/JOBS_FILE: cannot read ".*missing\.ndjson" \(ENOENT\)/);
    const mixed = spawnRole('producer', { ...env('none'), JOBS_FILE: '-', JOBS: '5' });
    expect((await exitOf(mixed)).code).toBe(2);
    expect(mixed.output()).toMatch(/JOBS: not used with JOBS_FILE/);
  });

  it('run again after a SIGKILL mid-file, it puts only the lines that are missing', async () => {
    const lines = 600;
    const file = join(dir.path, 'jobs.ndjson');
    writeFileSync(file, Array.from({ length: lines }, (_, i) => sleepLine(i)).join('\n') + '\n');
    const base = { ...env('resume'), JOBS_FILE: file, PRODUCER_ID: 'files', BATCH_SIZE: '10' };
    const produced = async () =>
      (await readRunStatus(ctx.redis, ctx.queue, 'resume', 3_000))?.jobs.produced ?? 0;
    // No consumer yet: the run cannot join while the producer is away.
    const first = spawnRole('producer', { ...base, PRODUCE_INTERVAL_MS: '20' });
    const deadline = Date.now() + 30_000;
    while ((await produced()) < 100 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    first.child.kill('SIGKILL');
    await exitOf(first);
    const before = await produced();
    expect(before).toBeGreaterThanOrEqual(100);
    expect(before).toBeLessThan(lines); // killed mid-file
    const again = spawnRole('producer', base);
    expect((await exitOf(again)).code, again.output()).toBe(0);
    const keyed = queueShards(ctx.queue, 1).map((s) => shardRunKeys(s, 'resume').keyed);
    expect(await ctx.redis.scard(keyed[0]!)).toBe(lines);
    expect(await produced()).toBe(lines);
    const consumer = spawnRole('consumer', { ...env('resume'), CONCURRENCY: '8' });
    expect((await exitOf(consumer, 60_000)).code, consumer.output()).toBe(0);
    const status = await readRunStatus(ctx.redis, ctx.queue, 'resume', 3_000);
    expect(status?.join.state).toBe('joined');
    expect(status?.jobs).toMatchObject({ produced: lines, completed: lines, failed: 0 });
  });
});
