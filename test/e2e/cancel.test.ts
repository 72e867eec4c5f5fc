import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { createProducer } from '../../producers/producer.js';
import { loadJobRegistry } from '../../shared/jobs/index.js';
import { jobOptions, openQueue } from '../../shared/queue.js';
import { projectRoot } from '../../shared/roles.js';
import { RunStore } from '../../shared/run/run-store.js';
import { formatRunStatus, readRunStatus, type RunStatus } from '../../shared/run/status.js';
import { exitOf, spawnRole, spawnTracked, type Spawned } from '../helpers/processes.js';
import { FAST } from '../helpers/demo.js';
import { pollUntil, redisUrl } from '../helpers/redis.js';
import { useTempDir } from '../helpers/temp-dir.js';
import { useTestQueue } from '../helpers/test-queue.js';

const JOB_MODULES = './test/fixtures/cancel-jobs.ts';

describe('cancel across processes (real producer, consumer and cancel processes)', () => {
  // Before useTestQueue: the folder is removed only after the queue's release.
  const dir = useTempDir('cancel-test-');
  const ctx = useTestQueue();
  let base: Record<string, string>;

  beforeEach(() => {
    base = { ...FAST, REDIS_URL: redisUrl(), QUEUE: ctx.queue, RUN_ID: 'r', JOB_MODULES };
  });

  const status = async (): Promise<RunStatus> => {
    const s = await readRunStatus(ctx.redis, ctx.queue, 'r', 3_000);
    if (!s) throw new Error('run not found');
    return s;
  };
  const cancelCommand = (args: string[]): Spawned =>
    spawnTracked(
      'cancel',
      process.execPath,
      ['--import', 'tsx', `${projectRoot}/scripts/cancel/main.ts`, ...args],
      base,
    );
  /** A producer in this process (its puts are what the test cancels); the run expects only it. */
  const producerHere = async () => {
    const q = openQueue(ctx.queue, ctx.redis);
    ctx.cleanups.push(() => q.close());
    const run = new RunStore(ctx.redis, ctx.queue, 'r');
    await run.create(1, 10_000);
    await run.registerProducer('p1', { host: 'test', pid: 1 }, 10_000);
    const registry = await loadJobRegistry([JOB_MODULES], projectRoot);
    const producer = createProducer({
      run,
      registry,
      producerId: 'p1',
      jobOptions: jobOptions({ attempts: 3, backoffMs: 10, keepCompleted: 100, keepFailed: 100 }),
    });
    return { run, producer };
  };

  it('a waiting job cancelled from another process never runs; a running one is aborted in the consumer holding it', async () => {
    const { producer } = await producerHere();
    const consumer = spawnRole('consumer', { ...base, CONCURRENCY: '1', CONSUMER_ID: 'c1' }, { label: 'c1' });
    await consumer.waitFor('consumer ready');
    const [running, waiting] = await producer.putMany([
      { type: 'watchful', payload: { ms: 60_000 } },
      { type: 'watchful', payload: { ms: 60_000 } },
    ]);
    await producer.flush();
    await consumer.waitFor('handler started');

    const c1 = cancelCommand(['--run', 'r', '--job', waiting!]);
    expect((await exitOf(c1)).code).toBe(0);
    expect(c1.stdout()).toContain('it had not started and never will');

    const c2 = cancelCommand(['--run', 'r', '--job', running!, '--json']);
    expect((await exitOf(c2)).code).toBe(0);
    expect(JSON.parse(c2.stdout())).toMatchObject({ target: 'job', result: { outcome: 'signalled' } });
    await consumer.waitFor('handler saw the abort', 10_000);

    await producer.done();
    expect((await exitOf(consumer)).code).toBe(0);
    const starts = consumer
      .output()
      .split('\n')
      .filter((l) => l.includes('"msg":"handler started"'));
    expect(starts, 'the cancelled waiting job never started').toHaveLength(1);
    const s = await status();
    expect(s.join.state).toBe('joined');
    expect(s.join.totals).toMatchObject({ produced: 2, completed: 0, failed: 0, cancelled: 2 });
    expect(s.jobs.cancelled).toBe(2);

    // Nothing left to cancel: said so, exit 0; an unknown job: exit 1.
    const again = cancelCommand(['--run', 'r']);
    expect((await exitOf(again)).code).toBe(0);
    expect(again.stdout()).toContain('has already joined');
    const unknown = cancelCommand(['--run', 'nope', '--job', 'x']);
    expect((await exitOf(unknown)).code).toBe(1);
    // On the joined run: a job of it is left as it is (exit 0), an id that is not one of its jobs is unknown.
    const ofRun = cancelCommand(['--run', 'r', '--job', running!]);
    expect((await exitOf(ofRun)).code).toBe(0);
    const notOfRun = cancelCommand(['--run', 'r', '--job', 'nope']);
    expect((await exitOf(notOfRun)).code, notOfRun.output()).toBe(1);
    expect(notOfRun.stdout()).toContain('no job nope in run r');
  });

  it('a sandboxed handler that ignores its abort is really terminated: a child process killed, a worker thread stopped', async () => {
    const { run, producer } = await producerHere();
    const consumer = spawnRole(
      'consumer',
      { ...base, CONCURRENCY: '2', CONSUMER_ID: 'c1', CANCEL_GRACE_MS: '300' },
      { label: 'c1' },
    );
    await consumer.waitFor('consumer ready');
    const procFile = join(dir.path, 'process.log');
    const threadFile = join(dir.path, 'thread.log');
    const [inProcess, inThread] = await producer.putMany([
      { type: 'stubborn-process', payload: { ms: 60_000, file: procFile } },
      { type: 'stubborn-thread', payload: { ms: 60_000, file: threadFile } },
    ]);
    const ticking = (file: string) => existsSync(file) && readFileSync(file, 'utf8').includes('tick');
    await pollUntil(
      'both sandboxes to run',
      () => Promise.resolve(ticking(procFile) && ticking(threadFile) ? true : undefined),
      30_000,
    );
    const pid = Number(/^pid (\d+)/.exec(readFileSync(procFile, 'utf8'))![1]);
    expect(pid).not.toBe(consumer.child.pid);
    expect(alive(pid)).toBe(true);

    await run.cancelJob(inProcess!);
    await run.cancelJob(inThread!);
    await pollUntil(
      'the child process to be killed',
      () => Promise.resolve(alive(pid) ? undefined : true),
      30_000,
    );
    // The thread's ticks stop: the file stays the same size for longer than a few ticks.
    const size = await pollUntil(
      'the thread to stop ticking',
      async () => {
        const before = statSync(threadFile).size;
        await new Promise((r) => setTimeout(r, 200));
        return statSync(threadFile).size === before ? before : undefined;
      },
      30_000,
    );
    expect(consumer.output()).toContain('terminating its sandbox');
    await producer.done();
    expect((await exitOf(consumer)).code).toBe(0);
    expect(statSync(threadFile).size).toBe(size);
    expect((await status()).join.totals).toMatchObject({ produced: 2, cancelled: 2 });
    // Terminated for real: the consumer has no handler left running.
    const record = (await status()).consumers.find((c) => c.id === 'c1');
    expect(record?.runaway ?? []).toEqual([]);
  });

  it('cancel a run of 3 producers x 2 consumers with long jobs mid-flight: joined once with exact totals, every process exits 0 long before the jobs would end', async () => {
    const env = {
      ...base,
      PRODUCERS: '3',
      // More than they can put before the cancel (100 s), however slow the machine: each one must be
      // stopped by it.
      JOBS: '1000',
      JOB_TYPE: 'watchful',
      JOB_PAYLOAD: JSON.stringify({ ms: 120_000 }),
      PRODUCE_INTERVAL_MS: '100',
      CONCURRENCY: '2',
    };
    const consumers = ['c1', 'c2'].map((id) =>
      spawnRole('consumer', { ...env, CONSUMER_ID: id }, { label: id }),
    );
    const producers = ['p1', 'p2', 'p3'].map((id) =>
      spawnRole('producer', { ...env, PRODUCER_ID: id }, { label: id }),
    );
    await pollUntil('4 jobs running and more waiting', async () => {
      const s = await status();
      const busy = s.consumers.reduce((n, c) => n + c.current.length, 0);
      return busy === 4 && s.jobs.unfinished > 6 ? true : undefined;
    });
    const started = Date.now();
    const cancel = cancelCommand(['--run', 'r']);
    expect((await exitOf(cancel)).code).toBe(0);
    expect(cancel.stdout()).toMatch(/^cancelled run r: \d+ jobs not yet started were cancelled/);
    const exits = await Promise.all([...producers, ...consumers].map((p) => exitOf(p, 30_000)));
    expect(exits.map((e) => e.code)).toEqual([0, 0, 0, 0, 0]);
    expect(Date.now() - started, 'well before the 120 s jobs would end').toBeLessThan(20_000);

    const s = await status();
    expect(s.join.state).toBe('joined');
    expect(s.join.cancelledAt).not.toBeNull();
    // Said as it happened: no signal stopped the producers, and "joined" as status --list says it.
    const text = formatRunStatus(s);
    expect(text).toMatch(/^run r on queue \S+: joined at \S+ \(cancelled at \S+\)$/m);
    expect(text).toMatch(/stopped early: the run was cancelled/);
    expect(text).not.toContain('signal');
    const t = s.join.totals!;
    expect(t.completed).toBe(0);
    expect(t.failed).toBe(0);
    expect(t.removed).toBe(0);
    expect(t.cancelled).toBe(t.produced);
    expect(t.produced).toBe(s.producers.list.reduce((n, p) => n + p.produced, 0));
    expect(s.jobs, JSON.stringify(s.jobs)).toMatchObject({ unfinished: 0, duplicateFinishes: 0 });
    for (const p of producers) expect(p.output()).toContain('"state":"cancelled"');
    expect(s.consumers.map((c) => c.state)).toEqual(['cancelled', 'cancelled']);
    // Every running handler saw its abort: 4 at the cancel.
    const aborted = consumers
      .flatMap((c) => c.output().split('\n'))
      .filter((l) => l.includes('handler saw the abort'));
    expect(aborted.length).toBeGreaterThanOrEqual(4);
    const joined = [...producers, ...consumers]
      .flatMap((p) => p.output().split('\n'))
      .filter((l) => l.includes('"msg":"run joined"'));
    expect(joined.length).toBeLessThanOrEqual(1);
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
