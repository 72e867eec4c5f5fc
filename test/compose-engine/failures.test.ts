import { describe, expect, it } from 'vitest';
import type { RunStatus } from '../../shared/run/status.js';
import { pollUntil } from '../helpers/redis.js';
import { expectExactTotals, expectExitedZero, quickRun } from './checks.js';
import { Stack, type Container } from './stack.js';

/** The record a container's process wrote: its id starts with the container's hostname (short id). */
const ofContainer = <T extends { host: string }>(list: T[], c: Container) =>
  list.filter((r) => r.host === c.id.slice(0, 12));

/**
 * SIGKILL to the container's PID 1 from the host, as the kernel's OOM killer or a crash would end it:
 * the container exits 137 and its restart policy (on-failure) applies. (`docker kill` counts as a
 * manual stop, after which Docker does not restart the container.)
 */
const crash = (c: Container) => process.kill(c.pid, 'SIGKILL');

/** A stack for one test, taken down (`down -v`) when the test ends, after showing its logs if it failed. */
async function start(
  ctx: { task: { result?: { state?: string } }; onTestFinished: (fn: () => Promise<void>) => void },
  project: string,
  settings: Record<string, string>,
): Promise<Stack> {
  const s = await Stack.create(project, settings);
  ctx.onTestFinished(async () => {
    if (ctx.task.result?.state === 'fail') console.log(await s.logs());
    const down = await s.down();
    if (down.code !== 0) throw new Error(`docker compose down -v exited ${down.code}: ${down.stderr}`);
  });
  await s.up();
  return s;
}

// Concurrent: each test has its own compose project and ports, and most of the time is spent waiting
// (the killed consumer's job lock to expire), so the three share the wall-clock time.
describe.concurrent('failures under docker compose', () => {
  it('a producer container SIGKILLed mid-run is restarted by its policy; nothing dropped or counted twice', async (ctx) => {
    const s = await start(
      ctx,
      'conveyor-t-producer-kill',
      // A lease the restart always fits in: a loaded machine took 10 s from the SIGKILL to the new
      // process, past the default 10 s, and the run counted the producer lost (refused, then restarted
      // again).
      quickRun({ producers: 3, consumers: 2, jobs: 30 }, { PRODUCE_INTERVAL_MS: '300', LEASE_MS: '30000' }),
    );
    const [victim] = await s.containers('producer');
    await pollUntil('producer-1 to have produced 5 jobs', async () => {
      const mine = ofContainer((await s.status('run-1')).producers.list, victim!);
      return (mine[0]?.produced ?? 0) >= 5 ? true : undefined;
    });
    crash(victim!);
    await pollUntil('producer-1 to be restarted by its restart policy', async () => {
      const [c] = (await s.containers('producer')).filter((x) => x.id === victim!.id);
      return c && c.restartCount >= 1 ? true : undefined;
    });
    await s.waitJoined('run-1');
    await expectExitedZero(s, ['producer', 'consumer'], { [victim!.name]: 1 });
    const status = await s.status('run-1');
    const producers = status.producers.list.map((p) => ({
      host: p.host,
      state: p.state,
      produced: p.produced,
    }));
    console.log(`producer SIGKILL: ${JSON.stringify({ jobs: status.jobs, producers })}`);
    // The restarted producer is a new incarnation that plans its 30 jobs again; what the killed one
    // had acknowledged stays in the run. Nothing dropped: every acknowledged job completed once.
    const produced = producers.reduce((n, p) => n + p.produced, 0);
    expect(producers.filter((p) => p.host !== victim!.id.slice(0, 12)).map((p) => p.produced)).toEqual([
      30, 30,
    ]);
    expect(produced).toBeGreaterThanOrEqual(90 + 5);
    expect(produced).toBeLessThanOrEqual(90 + 30);
    expect(status.join.state).toBe('joined');
    expect(status.join.totals).toMatchObject({ produced, completed: produced, failed: 0, removed: 0 });
    expect(status.jobs).toMatchObject({
      produced,
      completed: produced,
      failed: 0,
      unfinished: 0,
      lostAcks: 0,
      duplicateFinishes: 0,
    });
    expect(status.consumers.map((c) => c.state)).toEqual(['cancelled', 'cancelled']);
  });

  it('a consumer container SIGKILLed mid-job: its job is redelivered, the run joins exactly', async (ctx) => {
    const s = await start(
      ctx,
      'conveyor-t-consumer-kill',
      quickRun({ producers: 2, consumers: 2, jobs: 6 }, { JOB_MS: '2000', PRODUCE_INTERVAL_MS: '200' }),
    );
    const [victim] = await s.containers('consumer');
    await pollUntil('consumer-1 to be in the middle of a job', async () => {
      const mine = ofContainer((await s.status('run-1')).consumers, victim!);
      return mine[0]?.current.length ? true : undefined;
    });
    crash(victim!);
    // The killed job's lock expires (LOCK_MS, 30 s by default), then it is delivered again.
    const status = await s.waitJoined('run-1', 180_000);
    expectExactTotals(status, 12);
    await expectExitedZero(s, ['producer', 'consumer'], { [victim!.name]: 1 });
  });

  it('`docker compose stop consumer` mid-job: each consumer finishes or releases its job and exits 0', async (ctx) => {
    const s = await start(
      ctx,
      'conveyor-t-consumer-stop',
      quickRun({ producers: 1, consumers: 2, jobs: 6 }, { JOB_MS: '3000', PRODUCE_INTERVAL_MS: '100' }),
    );
    // Both consumers have started (a container still starting when stopped never writes its record)
    // and one holds a job.
    await pollUntil('both consumers up, one in the middle of a job', async () => {
      const consumers = (await s.status('run-1')).consumers;
      return consumers.length === 2 && consumers.some((c) => c.current.length) ? true : undefined;
    });
    const stopped = await s.compose(['stop', 'consumer'], { withPassword: true });
    expect(stopped.code).toBe(0);
    const consumers = await expectExitedZero(s, ['consumer']);
    expect(consumers).toHaveLength(2);
    let status: RunStatus = await s.status('run-1');
    expect(status.join.state).toBe('pending');
    expect(status.consumers.map((c) => ({ state: c.state, current: c.current }))).toEqual([
      { state: 'stopped', current: [] },
      { state: 'stopped', current: [] },
    ]);
    // Nothing was lost in the stop: started again, the consumers finish the run exactly.
    await s.mustCompose(['start', 'consumer']);
    status = await s.waitJoined('run-1');
    expectExactTotals(status, 6);
    expect(status.jobs.duplicateFinishes).toBe(0);
    await expectExitedZero(s, ['producer', 'consumer']);
  });
});
