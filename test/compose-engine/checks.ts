import { expect } from 'vitest';
import type { RunStatus } from '../../shared/run/status.js';
import { pollUntil } from '../helpers/redis.js';
import type { Container, Stack } from './stack.js';

export type Shape = { producers: number; consumers: number; jobs: number };

/** Settings for a short run: a fixed job count per producer, so totals are exact. */
export const quickRun = (shape: Shape, more: Record<string, string> = {}): Record<string, string> => ({
  PRODUCERS: String(shape.producers),
  CONSUMERS: String(shape.consumers),
  JOBS: String(shape.jobs),
  JOB_MS: '50',
  PRODUCE_INTERVAL_MS: '500',
  ...more,
});

/** Waits until Prometheus has every producer, consumer and the dashboard as a target that is up. */
export async function expectTargetsUp(stack: Stack, shape: Shape): Promise<void> {
  let last: { job: string; health: string }[] = [];
  const up = (job: string) => last.filter((t) => t.job === job && t.health === 'up').length;
  await pollUntil(
    `Prometheus targets up: ${shape.producers} producers, ${shape.consumers} consumers, the dashboard`,
    async () => {
      last = await stack.targets();
      return up('producer') === shape.producers && up('consumer') === shape.consumers && up('dashboard') === 1
        ? true
        : undefined;
    },
    60_000,
    1_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last seen: ${JSON.stringify(last)}`);
  });
}

/** The run's books are exact: every acknowledged job completed once, nothing lost. */
export function expectExactTotals(status: RunStatus, total: number): void {
  expect(status.join.state).toBe('joined');
  expect(status.join.totals).toMatchObject({ produced: total, completed: total, failed: 0, removed: 0 });
  expect(status.jobs).toMatchObject({
    produced: total,
    completed: total,
    failed: 0,
    unfinished: 0,
    lostAcks: 0,
  });
}

/** Every container of the services exited 0, each restarted `restarts` times (by name, default 0). */
export async function expectExitedZero(
  stack: Stack,
  services: string[],
  restarts: Record<string, number> = {},
): Promise<Container[]> {
  const all: Container[] = [];
  for (const s of services) all.push(...(await stack.waitExited(s)));
  expect(all.map((c) => ({ name: c.name, exitCode: c.exitCode, restarts: c.restartCount }))).toEqual(
    all.map((c) => ({ name: c.name, exitCode: 0, restarts: restarts[c.name] ?? 0 })),
  );
  return all;
}

/** Prometheus's final counts (each process's last value, summed) equal the run's. */
export async function expectPrometheusCounts(stack: Stack, total: number): Promise<void> {
  const sum = async (metric: string) =>
    (await stack.prom(`sum(max_over_time(${metric}[15m]))`)).reduce((a, r) => a + r.value, 0);
  let seen = { produced: -1, completed: -1 };
  await pollUntil(
    `Prometheus's produced and completed counts to reach ${total}`,
    async () => {
      seen = {
        produced: await sum('conveyor_jobs_produced_total'),
        completed: await sum('conveyor_jobs_completed_total'),
      };
      return seen.produced === total && seen.completed === total ? true : undefined;
    },
    30_000,
    1_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}; last seen ${JSON.stringify(seen)}`);
  });
}

/** A run as N × M containers of the same image ran it: start to join, exits, metrics. */
export async function expectCleanRun(stack: Stack, shape: Shape, runId: string): Promise<RunStatus> {
  await expectTargetsUp(stack, shape);
  await stack.waitJoined(runId);
  await expectExitedZero(stack, ['producer', 'consumer']);
  // Read once every process is gone: a consumer records `cancelled` a moment after the join.
  const status = await stack.status(runId);
  expectExactTotals(status, shape.producers * shape.jobs);
  expect(status.producers).toMatchObject({ expected: shape.producers, done: shape.producers, lost: 0 });
  expect(status.producers.list.map((p) => p.produced)).toEqual(Array(shape.producers).fill(shape.jobs));
  expect(status.consumers.map((c) => c.state)).toEqual(Array(shape.consumers).fill('cancelled'));
  await expectPrometheusCounts(stack, shape.producers * shape.jobs);
  return status;
}
