import type { Queue } from 'bullmq';
import type { JobData } from '../../shared/queue.js';
import type { RedisClient } from '../../shared/redis.js';
import { readRunStatus, type RunStatus } from '../../shared/run/status.js';
import type { DemoChild } from './children.js';
import type { ChildExit } from './end-summary.js';
import { progressLine } from './progress.js';

export type FollowedRun = {
  redis: RedisClient;
  queues: readonly Queue<JobData>[];
  queue: string;
  runId: string;
  leaseMs: number;
};

/**
 * Reads the run's status and queue depth and shows the progress line: rewritten in place on a
 * terminal; elsewhere printed when it changed, at most once a second.
 */
export function makeProgress(run: FollowedRun, stdout: NodeJS.WriteStream): () => Promise<RunStatus | null> {
  const tty = stdout.isTTY;
  let lastLine = '';
  let lastPrinted = 0;
  return async () => {
    const [status, ...counts] = await Promise.all([
      readRunStatus(run.redis, run.queue, run.runId, run.leaseMs),
      ...run.queues.map((q) => q.getJobCounts('waiting', 'prioritized', 'delayed', 'active')),
    ]);
    if (!status) return null;
    const depth = counts.reduce(
      (n, c) => n + (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0) + (c.active ?? 0),
      0,
    );
    const line = progressLine(status, depth);
    if (tty) stdout.write(`\r\x1b[K${line}`);
    else if (line !== lastLine && Date.now() - lastPrinted > 1_000) {
      stdout.write(`${line}\n`);
      lastPrinted = Date.now();
    }
    lastLine = line;
    return status;
  };
}

/** Shows progress until every child has exited; then each child's exit and the run's final status. */
export async function followUntilExit(
  run: FollowedRun,
  children: readonly DemoChild[],
  stdout: NodeJS.WriteStream,
): Promise<{ exits: ChildExit[]; final: RunStatus | null }> {
  const show = makeProgress(run, stdout);
  const ticker = setInterval(() => void show().catch(() => undefined), 250);
  const exits = await Promise.all(children.map((c) => c.exit));
  clearInterval(ticker);
  const final = await show();
  stdout.write('\n');
  return { exits, final };
}
