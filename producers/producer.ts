import type { JobsOptions, Queue } from 'bullmq';
import { nameSchema } from '../shared/config.js';
import type { JobRegistry } from '../shared/jobs/registry.js';
import { shardForKey } from '../shared/keys.js';
import type { JobData } from '../shared/queue.js';
import { RunError, type RunStore } from '../shared/run/run-store.js';
import { PutBatcher, type BatcherOptions } from './put-batcher.js';

/** A payload refused before it reached Redis; `reason` says what is wrong with it. */
export class PayloadError extends Error {
  constructor(
    readonly jobType: string,
    readonly reason: string,
    readonly index?: number,
  ) {
    super(`Invalid "${jobType}" payload${index === undefined ? '' : ` at item ${index}`}: ${reason}`);
    this.name = 'PayloadError';
  }
}

export type PutItem = {
  type: string;
  payload: unknown;
  /** Idempotency key: putting the same key again in this run enqueues nothing new. */
  key?: string;
  /**
   * Jobs with the same shard key go to the same shard, in the order they were put (FIFO there).
   * Without one, a keyed job goes by its idempotency key and the rest round-robin over the shards.
   */
  shardKey?: string;
  /** How long one attempt may run (ms) before it is aborted and fails as timed out (retried per ATTEMPTS). */
  timeoutMs?: number;
};

export type Producer = {
  /**
   * `queue.put(item)`: validates and enqueues; resolves once Redis has stored the job. Its
   * acknowledgement in the run follows in the background (see `flush`).
   */
  put(
    type: string,
    payload: unknown,
    opts?: { key?: string; shardKey?: string; timeoutMs?: number },
  ): Promise<string>;
  /** The batch form: all items are validated first, so one bad payload enqueues nothing. */
  putMany(items: readonly PutItem[]): Promise<string[]>;
  /** Resolves when every job put so far is acknowledged in the run (what `done` waits for). */
  flush(): Promise<void>;
  /**
   * Reports this producer done in the run, after `flush`: the seed's producer coroutine returning.
   * `stoppedEarly`: a signal ended it before its planned jobs (status says so).
   */
  done(opts?: { stoppedEarly?: boolean }): ReturnType<RunStore['producerDone']>;
  /** Jobs this producer enqueued (keys already used in the run are not enqueued again). */
  readonly enqueued: number;
  /** Of those, how many the run has acknowledged so far. */
  readonly produced: number;
};

export type ProducerDeps = {
  /** One BullMQ queue per shard of the run, in shard order. */
  queues: readonly Queue<JobData>[];
  run: RunStore;
  registry: JobRegistry;
  producerId: string;
  /** This incarnation's instance id (what `registerProducer` returned); the producer id by default. */
  instance?: string;
  jobOptions: JobsOptions;
  /** How concurrent puts are coalesced into bulk adds (PUT_LINGER_MS sets `lingerMs`). */
  batching?: Partial<BatcherOptions>;
};

/**
 * The producer side of a run. Job ids are deterministic (`<run>.<instance>.<seq>`), so an add that is
 * retried after a lost reply cannot create a second job, and a restarted producer (a new instance)
 * never reuses an earlier one's ids. Each batch is written to the instance's in-flight set with the
 * add, and acknowledged in the run only after Redis confirmed the add.
 */
const ACK_DELAY_MS = 10;
const ACK_BATCH = 500;
const DEFAULT_BATCHING: BatcherOptions = { maxBatch: 1_000, maxInFlight: 2, lingerMs: 0 };

export function createProducer(deps: ProducerDeps): Producer {
  const { queues, run, registry } = deps;
  const producerId = deps.instance ?? deps.producerId;
  const shardCount = queues.length;
  let seq = 0;
  let roundRobin = 0;
  let enqueued = 0;
  const producedOn = queues.map(() => 0);
  // Acknowledgements are batched per shard: while one is in flight, later ids wait and go together. A
  // producer that dies with some unacknowledged is settled from its in-flight sets when its lease runs out.
  let pendingAck: string[][] = queues.map(() => []);
  let pendingCount = 0;
  const keyedIds = new Set<string>();
  let acking: Promise<void> | null = null;
  let ackError: Error | null = null;
  const ackLoop = async () => {
    while (pendingCount > 0) {
      const batches = pendingAck;
      pendingAck = queues.map(() => []);
      pendingCount = 0;
      await Promise.all(
        batches.map(async (ids, shard) => {
          try {
            producedOn[shard]! += await run.ackAdded(shard, producerId, ids, keyedIds);
          } catch (err) {
            // Refused: this instance is fenced. Withdraw what it just added (a job a consumer already
            // took runs, and the run reports it as rejected work).
            if (err instanceof RunError && err.code === 'fenced') await withdraw(shard, ids);
            throw err;
          }
        }),
      );
    }
  };
  // Acknowledge after a short pause so that puts in quick succession share one script call.
  let ackTimer: NodeJS.Timeout | undefined;
  const scheduleAck = () => {
    if (pendingCount >= ACK_BATCH) startAck();
    else ackTimer ??= setTimeout(startAck, ACK_DELAY_MS);
  };
  const startAck = () => {
    clearTimeout(ackTimer);
    ackTimer = undefined;
    acking ??= ackLoop()
      .catch((err: unknown) => {
        ackError = err instanceof Error ? err : new Error(String(err));
      })
      .finally(() => {
        acking = null;
        // Ids that arrived as the loop was ending: their timer may have fired while it still ran.
        if (pendingCount > 0 && !ackError) scheduleAck();
      });
  };
  const withdraw = async (shard: number, ids: readonly string[]) => {
    await Promise.all(ids.map((id) => queues[shard]!.remove(id).catch(() => 0)));
  };
  const flush = async () => {
    while ((pendingCount > 0 || acking) && !ackError) {
      if (!acking) startAck();
      await acking;
    }
    if (ackError) throw ackError;
  };
  const shardOf = (item: PutItem): number => {
    if (shardCount === 1) return 0;
    const routeBy = item.shardKey ?? item.key;
    return routeBy === undefined ? roundRobin++ % shardCount : shardForKey(routeBy, shardCount);
  };

  const putMany = async (items: readonly PutItem[]): Promise<string[]> => {
    if (ackError) throw ackError;
    const checked = items.map((item, index) => {
      const v = registry.validate(item.type, item.payload);
      if (!v.ok) throw new PayloadError(item.type, v.reason, items.length > 1 ? index : undefined);
      for (const [field, value] of [
        ['key', item.key],
        ['shardKey', item.shardKey],
      ] as const) {
        if (value !== undefined && !nameSchema.safeParse(value).success)
          throw new PayloadError(item.type, `${field} must be 1-64 letters, digits, "_", "." or "-"`, index);
      }
      if (item.timeoutMs !== undefined && !(Number.isInteger(item.timeoutMs) && item.timeoutMs > 0))
        throw new PayloadError(item.type, 'timeoutMs must be a positive whole number of milliseconds', index);
      return { ...item, payload: v.payload };
    });
    const routed = checked.map((item) => ({
      item,
      shard: shardOf(item),
      id: item.key !== undefined ? `${run.runId}.k.${item.key}` : `${run.runId}.${producerId}.${seq++}`,
    }));
    const byShard = queues.map((_, shard) => routed.filter((r) => r.shard === shard));
    await Promise.all(
      byShard.map((batch, shard) => (batch.length > 0 ? putOnShard(shard, batch) : Promise.resolve())),
    );
    return routed.map((r) => r.id);
  };

  /** Writes the in-flight mark and the add for ids of one shard; resolves once Redis stored both. */
  const store = async (shard: number, fresh: readonly { item: PutItem; id: string }[]): Promise<void> => {
    const freshIds = fresh.map((f) => f.id);
    // Same connection and slot, so Redis runs the in-flight write before the add: one round trip for both.
    const jobs = fresh.map(({ item, id }) => ({
      name: item.type,
      data: {
        run: run.runId,
        producer: producerId,
        payload: item.payload,
        ...(item.timeoutMs !== undefined ? { timeoutMs: item.timeoutMs } : {}),
      },
      opts: { ...deps.jobOptions, jobId: id },
    }));
    const queue = queues[shard]!;
    // addBulk wraps even one job in MULTI/EXEC; a single put is a plain add.
    const only = jobs.length === 1 ? jobs[0]! : null;
    await run.inOneWrite(() =>
      Promise.all([
        run.markInflight(shard, producerId, freshIds),
        only ? queue.add(only.name, only.data, only.opts) : queue.addBulk(jobs),
      ]),
    );
    enqueued += freshIds.length;
    pendingAck[shard]!.push(...freshIds);
    pendingCount += freshIds.length;
    scheduleAck();
  };
  const batcher = new PutBatcher(shardCount, store, { ...DEFAULT_BATCHING, ...deps.batching });

  const putOnShard = async (
    shard: number,
    batch: readonly { item: PutItem; id: string }[],
  ): Promise<void> => {
    const keyed = batch.filter((b) => b.item.key !== undefined).map((b) => b.id);
    // Concurrent puts without idempotency keys share bulk adds.
    if (keyed.length === 0) return batcher.submit(shard, batch);
    // A key this run already accepted enqueues nothing, even after BullMQ trimmed its finished job.
    await flush();
    const accepted = await run.acceptedKeyed(shard, keyed);
    const fresh = batch.filter(({ id }) => !accepted.has(id));
    if (fresh.length === 0) return;
    await store(shard, fresh);
    for (const id of keyed) keyedIds.add(id);
  };

  return {
    putMany,
    put: async (type, payload, opts) =>
      (
        await putMany([
          { type, payload, key: opts?.key, shardKey: opts?.shardKey, timeoutMs: opts?.timeoutMs },
        ])
      )[0]!,
    flush,
    done: async (opts) => {
      await flush();
      return run.producerDone(deps.producerId, producedOn, incarnationOf(producerId, deps.producerId), opts);
    },
    get enqueued() {
      return enqueued;
    },
    get produced() {
      return producedOn.reduce((a, b) => a + b, 0);
    },
  };
}

/** The incarnation an instance id names (`<id>~<n>`, or 1 for the bare id). */
function incarnationOf(instance: string, producerId: string): number {
  return instance === producerId ? 1 : Number(instance.slice(producerId.length + 1));
}
