import { describe, expect, it } from 'vitest';
import { JobCancelledError, JobControl, JobTimeoutError } from '../../consumers/job-control.js';

/** A handler that waits for its signal, then settles as told. */
function waitsForAbort(settle: 'return' | 'throw' | 'ignore') {
  let seen: AbortSignal | undefined;
  let markStarted: () => void = () => undefined;
  const started = new Promise<void>((r) => (markStarted = r));
  const work = (signal: () => AbortSignal) =>
    new Promise<string>((resolve, reject) => {
      seen = signal();
      markStarted();
      if (settle === 'ignore') return;
      seen.addEventListener('abort', () =>
        settle === 'return' ? resolve('wound down') : reject(new Error('handler saw the abort')),
      );
    });
  return { work, started, signal: () => seen };
}

const job = (id: string, over: Partial<{ timeoutMs: number; graceMs: number }> = {}) => ({
  id,
  run: 'r1',
  timeoutMs: 0,
  graceMs: 1_000,
  ...over,
});
const noRunaway = () => undefined;

describe('JobControl: one job’s abort, cancel, timeout and stop', () => {
  it('a handler that never asks for its signal runs to its own result', async () => {
    const control = new JobControl();
    await expect(control.run(job('a'), () => Promise.resolve(7), noRunaway)).resolves.toBe(7);
  });

  it('a stop aborts the handler’s signal with the stop reason; the attempt ends with the handler’s result', async () => {
    const control = new JobControl();
    const h = waitsForAbort('return');
    const running = control.run(job('a'), h.work, noRunaway);
    await h.started;
    const reason = new Error('consumer stopping');
    control.stopAll(reason);
    await expect(running).resolves.toBe('wound down');
    expect(h.signal()?.aborted).toBe(true);
    expect(h.signal()?.reason).toBe(reason);
  });

  it('a job started after the stop gets a signal already aborted', async () => {
    const control = new JobControl();
    control.stopAll(new Error('consumer stopping'));
    let aborted: boolean | undefined;
    await control.run(
      job('late'),
      (signal) => {
        aborted = signal().aborted;
        return Promise.resolve();
      },
      noRunaway,
    );
    expect(aborted).toBe(true);
  });

  it('a cancel ends the attempt with the cancel, whatever the handler returns', async () => {
    const control = new JobControl();
    const h = waitsForAbort('return');
    const running = control.run(job('a'), h.work, noRunaway);
    await h.started;
    expect(control.cancelJob('a')).toBe(true);
    await expect(running).rejects.toBeInstanceOf(JobCancelledError);
    expect(control.cancelJob('a')).toBe(false);
  });

  it('a cancel before the handler reads its signal still reaches it', async () => {
    const control = new JobControl();
    let aborted: boolean | undefined;
    const running = control.run(
      job('a'),
      async (signal) => {
        await new Promise((r) => setImmediate(r));
        aborted = signal().aborted;
      },
      noRunaway,
    );
    control.cancelRun('r1');
    await expect(running).rejects.toBeInstanceOf(JobCancelledError);
    expect(aborted).toBe(true);
  });

  it('a timeout fails the attempt with the timeout error', async () => {
    const control = new JobControl();
    const h = waitsForAbort('throw');
    await expect(control.run(job('a', { timeoutMs: 20 }), h.work, noRunaway)).rejects.toBeInstanceOf(
      JobTimeoutError,
    );
  });

  it('a handler ignoring its cancel is let go after the grace, listed as runaway until it returns', async () => {
    const control = new JobControl();
    const told: boolean[] = [];
    const h = waitsForAbort('ignore');
    const running = control.run(job('a', { graceMs: 20 }), h.work, (_id, still) => told.push(still));
    await h.started;
    control.cancelJob('a');
    await expect(running).rejects.toBeInstanceOf(JobCancelledError);
    expect([...control.runaway]).toEqual(['a']);
    expect(told).toEqual([true]);
  });

  it('a runaway handler that returns while the job’s next attempt runs here leaves that attempt controlled', async () => {
    const control = new JobControl();
    const told: boolean[] = [];
    let finishRunaway: () => void = () => undefined;
    const first = control.run(
      job('a', { graceMs: 20 }),
      () => new Promise<string>((resolve) => (finishRunaway = () => resolve('late'))),
      (_id, still) => told.push(still),
    );
    control.cancelJob('a');
    await expect(first).rejects.toBeInstanceOf(JobCancelledError);
    const next = waitsForAbort('return');
    const second = control.run(job('a'), next.work, noRunaway);
    await next.started;
    finishRunaway();
    await expect.poll(() => told).toEqual([true, false]);
    expect([...control.runaway]).toEqual([]);
    // Still registered: a stop reaches it.
    control.stopAll(new Error('consumer stopping'));
    await expect(second).resolves.toBe('wound down');
  });

  it('a stop then a cancel: the cancel decides the outcome', async () => {
    const control = new JobControl();
    const h = waitsForAbort('return');
    const running = control.run(job('a'), h.work, noRunaway);
    await h.started;
    control.stopAll(new Error('consumer stopping'));
    control.cancelJob('a');
    await expect(running).rejects.toBeInstanceOf(JobCancelledError);
  });
});
