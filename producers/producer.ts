import type { JobsOptions, Queue } from 'bullmq';
import { nameSchema } from '../shared/config.js';
import type { JobRegistry } from '../shared/jobs/registry.js';
import type { JobData } from '../shared/queue.js';
import type { RunStore } from '../shared/run/run-store.js';

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
};

export type Producer = {
  /**
   * `queue.put(item)`: validates and enqueues; resolves once Redis has stored the job. Its
   * acknowledgement in the run follows in the background (see `flush`).
   */
  put(type: string, payload: unknown, opts?: { key?: string }): Promise<string>;
  /** The batch form: all items are validated first, so one bad payload enqueues nothing. */
  putMany(items: readonly PutItem[]): Promise<string[]>;
  /** Resolves when every job put so far is acknowledged in the run (what `done` waits for). */
  flush(): Promise<void>;
  /** Reports this producer done in the run, after `flush`: the seed's producer coroutine returning. */
  done(): ReturnType<RunStore['producerDone']>;
  /** Jobs this producer enqueued (keys already used in the run are not enqueued again). */
  readonly enqueued: number;
  /** Of those, how many the run has acknowledged so far. */
  readonly produced: number;
};

export type ProducerDeps = {
  queue: Queue<JobData>;
  run: RunStore;
  registry: JobRegistry;
  producerId: string;
  jobOptions: JobsOptions;
};

/**
 * The producer side of a run. Job ids are deterministic (`<run>.<producer>.<seq>`), so an add that is
 * retried after a lost reply cannot create a second job. Each batch is written to the producer's
 * in-flight set with the add, and acknowledged in the run only after Redis confirmed the add.
 */
const ACK_DELAY_MS = 10;
const ACK_BATCH = 500;

export function createProducer(deps: ProducerDeps): Producer {
  const { queue, run, registry, producerId } = deps;
  let seq = 0;
  let enqueued = 0;
  let produced = 0;
  // Acknowledgements are batched: while one is in flight, later ids wait and go together. A producer
  // that dies with some unacknowledged is settled from its in-flight set when its lease runs out.
  let pendingAck: string[] = [];
  const keyedIds = new Set<string>();
  let acking: Promise<void> | null = null;
  let ackError: Error | null = null;
  const ackLoop = async () => {
    while (pendingAck.length > 0) {
      const batch = pendingAck;
      pendingAck = [];
      produced += await run.ackAdded(producerId, batch, keyedIds);
    }
  };
  // Acknowledge after a short pause so that puts in quick succession share one script call.
  let ackTimer: NodeJS.Timeout | undefined;
  const scheduleAck = () => {
    if (pendingAck.length >= ACK_BATCH) startAck();
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
        if (pendingAck.length > 0 && !ackError) scheduleAck();
      });
  };
  const flush = async () => {
    while ((pendingAck.length > 0 || acking) && !ackError) {
      if (!acking) startAck();
      await acking;
    }
    if (ackError) throw ackError;
  };

  const putMany = async (items: readonly PutItem[]): Promise<string[]> => {
    if (ackError) throw ackError;
    const checked = items.map((item, index) => {
      const v = registry.validate(item.type, item.payload);
      if (!v.ok) throw new PayloadError(item.type, v.reason, items.length > 1 ? index : undefined);
      if (item.key !== undefined && !nameSchema.safeParse(item.key).success) {
        throw new PayloadError(item.type, 'key must be 1-64 letters, digits, "_", "." or "-"', index);
      }
      return { ...item, payload: v.payload };
    });
    const ids = checked.map((item) =>
      item.key !== undefined ? `${run.runId}.k.${item.key}` : `${run.runId}.${producerId}.${seq++}`,
    );
    // A key this run already accepted enqueues nothing, even after BullMQ trimmed its finished job.
    const keyed = ids.filter((_, i) => checked[i]!.key !== undefined);
    if (keyed.length > 0) await flush();
    const accepted = await run.acceptedKeyed(keyed);
    const fresh = checked.map((item, i) => ({ item, id: ids[i]! })).filter(({ id }) => !accepted.has(id));
    if (fresh.length > 0) {
      const freshIds = fresh.map((f) => f.id);
      // Same connection, so Redis runs the in-flight write before the add: one round trip for both.
      const jobs = fresh.map(({ item, id }) => ({
        name: item.type,
        data: { run: run.runId, producer: producerId, payload: item.payload },
        opts: { ...deps.jobOptions, jobId: id },
      }));
      // addBulk wraps even one job in MULTI/EXEC; a single put is a plain add.
      const only = jobs.length === 1 ? jobs[0]! : null;
      await Promise.all([
        run.markInflight(producerId, freshIds),
        only ? queue.add(only.name, only.data, only.opts) : queue.addBulk(jobs),
      ]);
      enqueued += freshIds.length;
      for (const id of keyed) keyedIds.add(id);
      pendingAck.push(...freshIds);
      scheduleAck();
    }
    return ids;
  };

  return {
    putMany,
    put: async (type, payload, opts) => (await putMany([{ type, payload, key: opts?.key }]))[0]!,
    flush,
    done: async () => {
      await flush();
      return run.producerDone(producerId, produced);
    },
    get enqueued() {
      return enqueued;
    },
    get produced() {
      return produced;
    },
  };
}
