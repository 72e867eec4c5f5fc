import type { RedisClient } from '../shared/redis.js';
import type { Logger } from '../shared/logger.js';
import { RunStore, type FinishEntry } from '../shared/run/run-store.js';
import type { FinishOutcome, JoinAttempt } from '../shared/run/types.js';

const MAX_BATCH = 500;
const MAX_STORES = 64;

type Batch = { runId: string; shard: number; entries: FinishEntry[] };

/**
 * Reports finished jobs to their runs in small batches (one script call per run and shard per `flushMs`), so
 * the accounting costs a fraction of a round trip per job. A consumer that dies with reports still
 * buffered loses nothing: the join check reads those jobs' outcomes from BullMQ.
 */
export class FinishRecorder {
  private readonly pending = new Map<string, Batch>();
  // One store per run: building one derives every shard's keys, which need not happen per batch.
  private readonly stores = new Map<string, RunStore>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private disposed = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly queue: string,
    private readonly shards: number,
    private readonly flushMs: number,
    private readonly log: Logger,
    private readonly onJoin: (runId: string, attempt: JoinAttempt) => void,
  ) {}

  add(runId: string, shard: number, id: string, outcome: FinishOutcome): void {
    const key = `${shard} ${runId}`;
    let batch = this.pending.get(key);
    if (!batch) this.pending.set(key, (batch = { runId, shard, entries: [] }));
    batch.entries.push({ id, outcome });
    if (batch.entries.length >= MAX_BATCH) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.flushMs);
  }

  /** Sends everything buffered; resolves when Redis has it (retrying through outages). */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batches = [...this.pending.values()];
    this.pending.clear();
    this.flushing = this.flushing.then(() => this.send(batches));
    return this.flushing;
  }

  get redisClient(): RedisClient {
    return this.redis;
  }

  /** The run's store (one per run; a worker without RUN_ID keeps the latest few). */
  store(runId: string): RunStore {
    let store = this.stores.get(runId);
    if (!store) {
      // A worker without RUN_ID serves run after run: keep only the latest few.
      if (this.stores.size >= MAX_STORES) this.stores.delete(this.stores.keys().next().value!);
      this.stores.set(runId, (store = new RunStore(this.redis, this.queue, runId, this.shards)));
    }
    return store;
  }

  private async send(batches: Batch[]): Promise<void> {
    for (const { runId, shard, entries } of batches) {
      const store = this.store(runId);
      for (;;) {
        try {
          const r = await store.recordFinished(shard, entries);
          if (r.duplicates > 0)
            this.log.warn({ runId, duplicates: r.duplicates }, 'finish already counted (redelivered job)');
          if (r.join.joinedNow) this.onJoin(runId, r.join);
          break;
        } catch (err) {
          if (this.disposed) {
            this.log.error(
              { runId, lost: entries.length },
              'gave up reporting finished jobs; the join check will reconcile them',
            );
            break;
          }
          this.log.warn({ runId, err: String(err) }, 'could not record finished jobs; retrying');
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    }
  }

  /** Stops retrying: called when the connection is being closed for good. */
  dispose(): void {
    this.disposed = true;
    clearTimeout(this.timer);
  }
}
