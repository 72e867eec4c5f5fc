import { describe, expect, it } from 'vitest';
import { readRunStatus } from '../../shared/run/status.js';
import { makeSignalCounter } from '../../shared/shutdown.js';
import { FAST } from '../helpers/demo.js';
import { exitOf, spawnRole, spawnTracked, type Spawned } from '../helpers/processes.js';
import { pollUntil, redisUrl } from '../helpers/redis.js';
import { useTestQueue } from '../helpers/test-queue.js';

/** What a terminal does on Ctrl-C: SIGINT to every process of the foreground job's process group. */
const ctrlC = (p: Spawned) => process.kill(-p.child.pid!, 'SIGINT');

/**
 * npm itself ends by re-raising the SIGINT it got (as a shell expects of an interrupted job), even
 * when its script exited 0; what is checked is what the script's processes printed.
 */
async function npmEnded(p: Spawned): Promise<void> {
  const { code, signal } = await exitOf(p, 30_000);
  expect(code === 0 || signal === 'SIGINT', `npm ended with ${code ?? signal}:\n${p.output()}`).toBe(true);
}

describe('one Ctrl-C is graceful', () => {
  const ctx = useTestQueue();

  it('npm start (the demo, its private Redis and its children): every process stops gracefully and exits 0', async () => {
    const env = {
      ...FAST,
      PRODUCERS: '2',
      CONSUMERS: '2',
      JOBS: '40',
      JOB_MS: '300',
      PRODUCE_INTERVAL_MS: '20',
    };
    const demo = spawnTracked(
      'npm start',
      'npm',
      ['start', '--silent'],
      { ...env, DEMO_DASHBOARD: 'false' },
      { group: true },
    );
    // The progress line shows finished jobs: producers and consumers are mid-run.
    await demo.waitFor(/done [1-9]\d*\//, 30_000);
    ctrlC(demo);
    await npmEnded(demo);
    const out = demo.output();
    expect(out).toContain('Stopping every process gracefully');
    expect(out).not.toMatch(/Forcing|second signal|exited with code/);
    expect(out).toContain('All 4 processes exited 0.');
  }, 60_000);

  it('npm start interrupted while its processes are starting: says the run stopped before it started, no "code null"', async () => {
    const demo = spawnTracked(
      'npm start',
      'npm',
      ['start', '--silent'],
      { ...FAST, PRODUCERS: '2', CONSUMERS: '2', JOBS: '5', DEMO_DASHBOARD: 'false' },
      { group: true },
    );
    // The first progress line: the processes are launched and still loading when the Ctrl-C comes.
    await demo.waitFor('consumers none yet', 30_000);
    ctrlC(demo);
    await npmEnded(demo);
    const out = demo.output();
    expect(out).toContain('Stopping every process gracefully');
    expect(out).not.toMatch(/did not join|code null|Forcing/);
    expect(out).toMatch(/stopped before the run started|stopped before it joined/);
  }, 60_000);

  it('npm run consumer: one Ctrl-C lets the held job finish (npm relaying the signal is not a second one)', async () => {
    const base = {
      ...FAST,
      REDIS_URL: redisUrl(),
      QUEUE: ctx.queue,
      RUN_ID: 'ctrl-c',
      SHUTDOWN_GRACE_MS: '20000',
    };
    const consumer = spawnTracked(
      'npm run consumer',
      'npm',
      ['run', 'consumer', '--silent'],
      { ...base, CONSUMER_ID: 'c1' },
      { group: true },
    );
    const producer = spawnRole('producer', { ...base, JOBS: '1', JOB_MS: '2000', PRODUCE_INTERVAL_MS: '0' });
    await pollUntil('the consumer to hold the job', async () => {
      const s = await readRunStatus(ctx.redis, ctx.queue, 'ctrl-c', 3_000);
      return s?.consumers.find((c) => c.id === 'c1' && c.current.length > 0);
    });
    ctrlC(consumer);
    await npmEnded(consumer);
    expect(consumer.output()).toMatch(
      /"state":"stopped","reason":"SIGINT","jobsDone":1,"jobsFailed":0,"msg":"consumer stopped"/,
    );
    expect(consumer.output()).not.toContain('second signal');
    expect((await exitOf(producer, 30_000)).code, producer.output()).toBe(0);
    const s = await readRunStatus(ctx.redis, ctx.queue, 'ctrl-c', 3_000);
    expect(s?.jobs).toMatchObject({ produced: 1, completed: 1, failed: 0 });
  }, 60_000);
});

describe('signal counting', () => {
  it('a repeat within the echo window is the same Ctrl-C; a later one is a second', () => {
    let t = 1_000;
    const count = makeSignalCounter(500, () => t);
    expect(count()).toBe('first');
    t += 30;
    expect(count()).toBe('echo');
    t += 600;
    expect(count()).toBe('again');
  });
});
