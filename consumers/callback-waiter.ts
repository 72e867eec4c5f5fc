import type { Queue } from 'bullmq';
import type { Logger } from '../shared/logger.js';
import { openQueues, type JobData } from '../shared/queue.js';
import type { RedisClient } from '../shared/redis.js';
import { deliverCallbacks } from '../shared/run/callbacks.js';
import { claimDueCallbacks, type RunStore } from '../shared/run/run-store.js';
import type { FinishRecorder } from './finish-recorder.js';

/** Runs whose due callbacks one heartbeat delivers at most. */
const RUNS_PER_DELIVERY = 20;

export type CallbackWaiterDeps = {
  redis: RedisClient;
  queue: string;
  shards: number;
  heartbeatMs: number;
  recorder: FinishRecorder;
  log: Logger;
  /** The consumer's run, whose callbacks it finishes before leaving; null for a worker without one. */
  run: RunStore | null;
  /** Refreshes the consumer's record while it waits. */
  saveProgress: () => Promise<unknown>;
};

/**
 * Join callbacks, from a consumer's side: delivers any that are due (its run's, and the queue's
 * outbox), and after its run joined keeps the consumer working until the run's callbacks finished,
 * so a run ends with its callback jobs instead of leaving them to some later worker.
 */
export class CallbackWaiter {
  #queues: Queue<JobData>[] | undefined;
  #wake: (() => void) | undefined;
  #stopped = false;

  constructor(private readonly deps: CallbackWaiterDeps) {}

  /** The queues opened to deliver callbacks (none until the first delivery). */
  get queues(): readonly Queue<JobData>[] {
    return this.#queues ?? [];
  }

  async deliver(runId: string): Promise<void> {
    const { recorder, log } = this.deps;
    this.#queues ??= openQueues(this.deps.queue, this.deps.shards, this.deps.redis);
    const n = await deliverCallbacks(recorder.store(runId), this.#queues);
    if (n > 0) log.info({ run: runId, callbacks: n }, 'join callbacks delivered');
  }

  /** Delivers the callbacks of the queue's most overdue runs (whose shard count this consumer reads). */
  async deliverDue(): Promise<void> {
    const { redis, queue, heartbeatMs, recorder } = this.deps;
    const due = await claimDueCallbacks(redis, queue, RUNS_PER_DELIVERY, heartbeatMs);
    for (const runId of due) {
      const fits = await recorder
        .store(runId)
        .checkShards()
        .then(
          () => true,
          () => false,
        );
      if (fits) await this.deliver(runId);
    }
  }

  /** A callback job finished: look again now rather than at the next heartbeat. */
  settled(): void {
    this.#wake?.();
  }

  /** Stop waiting (a signal): the consumer leaves without waiting for its run's callbacks. */
  stop(): void {
    this.#stopped = true;
    this.#wake?.();
  }

  /** Resolves once every callback of the consumer's run has finished (or `stop`). */
  async untilRunCallbacksFinish(): Promise<void> {
    const { run, log } = this.deps;
    if (!run) return;
    let said = false;
    for (;;) {
      try {
        await this.deliver(run.runId);
        const states = Object.values(await run.callbackStates());
        if (states.every((s) => s === 'completed' || s === 'failed' || s === 'skipped')) return;
        if (!said) log.info('run joined: finishing its callbacks before leaving');
        said = true;
        await this.deps.saveProgress();
      } catch (err) {
        log.warn({ err: String(err) }, 'waiting for callbacks failed');
      }
      if (this.#stopped) return;
      await this.#sleep(this.deps.heartbeatMs);
      if (this.#stopped) return;
    }
  }

  #sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }
}
