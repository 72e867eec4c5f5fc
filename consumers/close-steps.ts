import { setTimeout as sleep } from 'node:timers/promises';
import type { AnyJobDefinition } from '../shared/jobs/define.js';
import type { Logger } from '../shared/logger.js';
import type { RedisClient } from '../shared/redis.js';
import type { ConsumerRecord, ConsumerState } from '../shared/run/types.js';
import { runSteps, type ShutdownStep } from '../shared/shutdown.js';
import type { FinishRecorder } from './finish-recorder.js';

/** How long a close step that only talks to Redis may take before the close moves on without it. */
const REDIS_STEP_MS = 2_000;
/** How long job types' disposeResources may take, together, before the consumer leaves without them. */
const DISPOSE_STEP_MS = 5_000;
/** Once a cancelled consumer holds no job, how long its workers get to close before it leaves without them. */
const CLOSE_WHEN_IDLE_MS = 10_000;

/** What a consumer's close works on: its parts, and how this close was asked for. */
export type CloseContext = {
  /** Held jobs' grace on a stop; null on a cancel, which waits for them as long as they take. */
  graceMs: number | null;
  finalState: 'cancelled' | 'stopped';
  reason: string;
  log: Logger;
  record: ConsumerRecord;
  save: (state?: ConsumerState) => Promise<unknown>;
  closeWorkers: () => Promise<unknown>;
  whenNoJobHeld: () => Promise<unknown>;
  abortHeldJobs: () => void;
  recorder: FinishRecorder;
  stopHeartbeat: () => void;
  queues: () => readonly { close(): Promise<void> }[];
  subscriber: RedisClient;
  resources: Map<AnyJobDefinition, unknown>;
};

/** Runs a consumer's close steps in order, each bounded (REDIS_STEP_MS unless it says otherwise) and isolated. */
export function runCloseSteps(c: CloseContext): Promise<void> {
  return runSteps(closeSteps(c), c.log, REDIS_STEP_MS);
}

/**
 * A consumer's close, as an ordered list of steps: stop taking work, finish or release held jobs,
 * record finishes and the final state, then release everything. Each step is bounded and isolated
 * (runSteps), so a Redis that does not answer costs each of its steps their bound, and disposing
 * resources still happens. Finishes a timed-out flush could not record are what a crashed consumer
 * leaves too: the run's reconcile pass counts them.
 */
function closeSteps(c: CloseContext): ShutdownStep[] {
  return [
    { name: 'record cancelling', run: () => c.save('cancelling') },
    {
      name: 'close workers',
      // Bounded inside: a stop by the grace period, then by CLOSE_WHEN_IDLE_MS; a cancel waits for
      // held jobs as long as they take (asyncio's cancel after join has none), by design.
      timeoutMs: null,
      run: () => closeWorkers(c),
    },
    { name: 'record finishes', run: () => c.recorder.flush() },
    { name: 'stop heartbeat', run: c.stopHeartbeat },
    {
      name: 'record final state',
      run: () => {
        c.record.cancelledAt = Date.now();
        c.record.cancelReason = c.reason;
        return c.save(c.finalState);
      },
    },
    { name: 'dispose finish recorder', run: () => c.recorder.dispose() },
    { name: 'close queues', run: () => Promise.all(c.queues().map((q) => q.close())) },
    { name: 'disconnect subscriber', run: () => c.subscriber.disconnect() },
    {
      name: 'dispose job resources',
      timeoutMs: DISPOSE_STEP_MS,
      run: async () => {
        for (const [def, r] of c.resources) await def.disposeResources?.(r);
      },
    },
  ];
}

/** Stops taking work and finishes held jobs: as long as they take on a cancel, within the grace on a stop. */
async function closeWorkers(c: CloseContext): Promise<void> {
  const closing = c.closeWorkers();
  if (c.graceMs === null) await Promise.race([closing, c.whenNoJobHeld()]);
  else if (!(await settlesWithin(closing, c.graceMs))) {
    c.abortHeldJobs();
    await Promise.race([closing, c.whenNoJobHeld()]);
  }
  // With no job held, a worker whose blocking connection is stuck reconnecting (a Redis Cluster
  // failing over) must not keep the consumer from leaving: nothing of the run is lost. BullMQ
  // memoises close(), so a forced close cannot unstick it.
  if (!(await settlesWithin(closing, CLOSE_WHEN_IDLE_MS)))
    c.log.warn(
      { waitedMs: CLOSE_WHEN_IDLE_MS },
      'a worker did not close with no job held (its connection is reconnecting): leaving without it',
    );
}

/** True if `p` settles within `ms`; the timer is cleared either way so it never holds the process open. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  const timer = new AbortController();
  try {
    return await Promise.race([p.then(() => true), sleep(ms, false, { signal: timer.signal })]);
  } finally {
    timer.abort();
  }
}
