import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { expectCleanRun, quickRun } from './checks.js';
import { Stack } from './stack.js';

const shape = { producers: 5, consumers: 4, jobs: 12 };

describe('docker compose up --scale producer=5 --scale consumer=4 (PRODUCERS=5)', () => {
  let stack: Stack;
  afterAll(async () => {
    if (stack) expect((await stack.down()).code).toBe(0);
  });

  it('joins with exact totals; every container exits 0; dashboard and Prometheus agree', async () => {
    stack = await Stack.create('conveyor-t-scale', quickRun(shape, { CONSUMERS: '' }));
    onTestFailed(async () => console.log(await stack.logs()));
    await stack.up('--scale', 'producer=5', '--scale', 'consumer=4');
    expect((await stack.containers('producer')).length).toBe(5);
    expect((await stack.containers('consumer')).length).toBe(4);
    await expectCleanRun(stack, shape, 'run-1');
  });
});
