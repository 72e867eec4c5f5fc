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
  /** `queue.put(item)`: validates, enqueues, and returns once Redis has acknowledged the job. */
  put(type: string, payload: unknown, opts?: { key?: string }): Promise<string>;
  /** The batch form: all items are validated first, so one bad payload enqueues nothing. */
  putMany(items: readonly PutItem[]): Promise<string[]>;
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
 * in-flight set first and acknowledged in the run only after Redis confirmed the add.
 */
export function createProducer(deps: ProducerDeps): Producer {
  const { queue, run, registry, producerId } = deps;
  let seq = 0;
  let produced = 0;

  const putMany = async (items: readonly PutItem[]): Promise<string[]> => {
    const checked = items.map((item, index) => {
      const v = registry.validate(item.type, item.payload);
      if (!v.ok) throw new PayloadError(item.type, v.reason, items.length > 1 ? index : undefined);
      if (item.key !== undefined && !nameSchema.safeParse(item.key).success) {
        throw new PayloadError(item.type, 'key must be 1-64 letters, digits, "_", "." or "-"', index);
      }
      return { ...item, payload: v.payload };
    });
    const ids = checked.map((item) =>
      item.key ? `${run.runId}.k.${item.key}` : `${run.runId}.${producerId}.${seq++}`,
    );
    // A key this run already accepted enqueues nothing, even after BullMQ trimmed its finished job.
    const keyed = new Set(ids.filter((_, i) => checked[i]!.key !== undefined));
    const accepted = await run.acceptedKeyed([...keyed]);
    const fresh = checked.map((item, i) => ({ item, id: ids[i]! })).filter(({ id }) => !accepted.has(id));
    if (fresh.length > 0) {
      const freshIds = fresh.map((f) => f.id);
      await run.markInflight(producerId, freshIds);
      await queue.addBulk(
        fresh.map(({ item, id }) => ({
          name: item.type,
          data: { run: run.runId, producer: producerId, payload: item.payload },
          opts: { ...deps.jobOptions, jobId: id },
        })),
      );
      produced += await run.ackAdded(producerId, freshIds, keyed);
    }
    return ids;
  };

  return {
    putMany,
    put: async (type, payload, opts) => (await putMany([{ type, payload, key: opts?.key }]))[0]!,
    get produced() {
      return produced;
    },
  };
}
