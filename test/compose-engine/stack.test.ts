import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { expectCleanRun, quickRun } from './checks.js';
import { Stack } from './stack.js';

const shape = { producers: 3, consumers: 2, jobs: 20 };

describe('docker compose up: PRODUCERS=3 CONSUMERS=2, as the README runs it', () => {
  let stack: Stack;
  afterAll(async () => {
    if (stack) expect((await stack.down()).code).toBe(0);
  });

  it('joins with exact totals; every container exits 0; dashboard and Prometheus agree', async () => {
    stack = await Stack.create('conveyor-t-basic', quickRun(shape));
    onTestFailed(async () => console.log(await stack.logs()));
    await stack.up();
    const unauthorised = await stack.dashboard('/api/status', false);
    expect(unauthorised.status).toBe(401);
    // RUN_ID is unset: compose's default `auto` gives the first run of the queue.
    const status = await expectCleanRun(stack, shape, 'run-1');
    expect(status.runId).toBe('run-1');
  });

  it('starts the next run on a second `up` with nothing changed', async () => {
    onTestFailed(async () => console.log(await stack.logs()));
    await stack.up();
    await stack.waitJoined('run-2');
    for (const s of ['producer', 'consumer'])
      expect((await stack.waitExited(s)).map((c) => c.exitCode)).toEqual(
        s === 'producer' ? [0, 0, 0] : [0, 0],
      );
    const status = await stack.status('run-2');
    expect(status.jobs).toMatchObject({ produced: 60, completed: 60, failed: 0, unfinished: 0 });
    expect(status.consumers.map((c) => c.state)).toEqual(['cancelled', 'cancelled']);
  });

  it('runs ps and logs without DASHBOARD_PASSWORD (down -v too, after all)', async () => {
    for (const args of [
      ['ps', '-a'],
      ['logs', '--tail', '5'],
      ['config', '--quiet'],
    ]) {
      const r = await stack.compose(args, { withPassword: false });
      expect({ args, code: r.code, stderr: r.stderr.includes('DASHBOARD_PASSWORD') }).toEqual({
        args,
        code: 0,
        stderr: false,
      });
    }
  });
});
