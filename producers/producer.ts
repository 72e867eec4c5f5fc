import { nameSchema } from '../shared/config.js';
import type { JobRegistry } from '../shared/jobs/registry.js';
import { keyedJobId, putJobId, shardForKey } from '../shared/keys.js';
import type { ConveyorJobOptions } from '../shared/queue.js';
import type { RunStore, StoredJob } from '../shared/run/run-store.js';
import { tracePut } from '../shared/tracing/put-span.js';
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
   * Without one, jobs round-robin over the shards. Not with `key`: a keyed job goes to its key's
   * shard, the one place that can tell whether the run already accepted the key.
   */
  shardKey?: string;
  /** How long one attempt may run (ms) before it is aborted and fails as timed out (retried per ATTEMPTS). */
  timeoutMs?: number;
};

export type Producer = {
  /** `queue.put(item)`: validates and enqueues; resolves once Redis stored the job and the run counts it. */
  put(
    type: string,
    payload: unknown,
    opts?: { key?: string; shardKey?: string; timeoutMs?: number },
  ): Promise<string>;
  /** The batch form: all items are validated first, so one bad payload enqueues nothing. */
  putMany(items: readonly PutItem[]): Promise<string[]>;
  /** Resolves when every put made so far has settled (what `done` waits for). */
  flush(): Promise<void>;
  /**
   * Reports this producer done in the run, after `flush` (the run joins once every producer is done
   * and every job finished).
   * `stoppedEarly`: a signal ended it before its planned jobs (status says so).
   */
  done(opts?: { stoppedEarly?: boolean }): ReturnType<RunStore['producerDone']>;
  /** Jobs this producer enqueued (keys already used in the run are not enqueued again). */
  readonly enqueued: number;
  /** Of those, how many the run acknowledged: all of them, since a put is stored and acknowledged at once. */
  readonly produced: number;
};

export type ProducerDeps = {
  run: RunStore;
  registry: JobRegistry;
  producerId: string;
  /** This incarnation's instance id (what `registerProducer` returned); the producer id by default. */
  instance?: string;
  /** The run's job id prefix (what `registerProducer` returned); read from the run when absent. */
  idPrefix?: string;
  /** Every job's BullMQ options (retry policy and trimming), stored with it. */
  jobOptions: ConveyorJobOptions;
  /** How concurrent puts are coalesced into one script call (PUT_LINGER_MS sets `lingerMs`). */
  batching?: Partial<BatcherOptions>;
};

const DEFAULT_BATCHING: BatcherOptions = { maxBatch: 1_000, maxInFlight: 2, lingerMs: 0 };

/** What `put` takes besides the type and payload; anything else is refused (BullMQ's own options are not put options). */
const PUT_OPTIONS: ReadonlySet<string> = new Set(['key', 'shardKey', 'timeoutMs']);

type Routed = { item: PutItem; shard: number; id: string; seq?: number };

/**
 * The producer side of a run. Job ids are deterministic (`<run>+<n>+<instance>+<seq>`, see keys.ts),
 * so a put that is sent again cannot create a second job, and a restarted producer (a new instance)
 * never reuses an earlier one's ids. Each put stores its jobs and has the run acknowledge them in one
 * script call (RunStore.putJobs), so nothing is ever stored but unacknowledged.
 */
export function createProducer(deps: ProducerDeps): Producer {
  const { run, registry } = deps;
  const producerId = deps.instance ?? deps.producerId;
  const shardCount = run.shardKeys.length;
  const options = JSON.stringify(deps.jobOptions);
  let seq = 0;
  let roundRobin = 0;
  const producedOn = run.shardKeys.map(() => 0);
  const produced = () => producedOn.reduce((a, b) => a + b, 0);
  const shardOf = (item: PutItem): number => {
    if (shardCount === 1) return 0;
    const routeBy = item.key ?? item.shardKey;
    return routeBy === undefined ? roundRobin++ % shardCount : shardForKey(routeBy, shardCount);
  };

  /** Stores one batch on one shard; resolves once the run acknowledged it. */
  const store = async (shard: number, batch: readonly Routed[]): Promise<void> => {
    const jobs = storedJobs(run.runId, producerId, batch);
    const { acknowledged, storedBefore } = await tracePut(
      run,
      { shard, jobs: jobs.length, producer: producerId },
      options,
      (opts) => run.putJobs(shard, producerId, opts, jobs),
    );
    producedOn[shard]! += acknowledged + storedBefore;
  };
  // Every put goes through the batcher, so an instance's seqs reach each shard in increasing order.
  const batcher = new PutBatcher(shardCount, store, { ...DEFAULT_BATCHING, ...deps.batching });

  let idPrefix: Promise<string> | undefined;
  const prefix = () => (idPrefix ??= deps.idPrefix ? Promise.resolve(deps.idPrefix) : run.idPrefix());

  const putMany = async (items: readonly PutItem[]): Promise<string[]> => {
    const checked = items.map((item, index) => checkedItem(registry, item, index, items.length));
    const p = await prefix();
    const routed: Routed[] = checked.map((item) => {
      if (item.key !== undefined) return { item, shard: shardOf(item), id: keyedJobId(p, item.key) };
      const n = seq++;
      return { item, shard: shardOf(item), id: putJobId(p, producerId, n), seq: n };
    });
    await Promise.all(
      producedOn.map((_, shard) => {
        const batch = routed.filter((r) => r.shard === shard);
        return batch.length > 0 ? batcher.submit(shard, batch) : Promise.resolve();
      }),
    );
    return routed.map((r) => r.id);
  };

  return {
    putMany,
    put: async (type, payload, opts) => {
      refuseUnknownPutOptions(type, opts);
      return (
        await putMany([
          { type, payload, key: opts?.key, shardKey: opts?.shardKey, timeoutMs: opts?.timeoutMs },
        ])
      )[0]!;
    },
    flush: () => batcher.idle(),
    done: async (opts) => {
      await batcher.idle();
      return run.producerDone(deps.producerId, producedOn, incarnationOf(producerId, deps.producerId), opts);
    },
    // A put is stored and acknowledged in one step: what was enqueued is what the run counts.
    get enqueued() {
      return produced();
    },
    get produced() {
      return produced();
    },
  };
}

/**
 * One item of a put, validated: its payload as the registry parsed it. Throws a PayloadError naming
 * the item (its index, when the put has more than one) and what is wrong with it.
 */
function checkedItem(registry: JobRegistry, item: PutItem, index: number, count: number): PutItem {
  const v = registry.validate(item.type, item.payload);
  if (!v.ok) throw new PayloadError(item.type, v.reason, count > 1 ? index : undefined);
  for (const [field, value] of [
    ['key', item.key],
    ['shardKey', item.shardKey],
  ] as const) {
    if (value !== undefined && !nameSchema.safeParse(value).success)
      throw new PayloadError(item.type, `${field} must be 1-64 letters, digits, "_", "." or "-"`, index);
  }
  if (item.timeoutMs !== undefined && !(Number.isInteger(item.timeoutMs) && item.timeoutMs > 0))
    throw new PayloadError(item.type, 'timeoutMs must be a positive whole number of milliseconds', index);
  if (item.key !== undefined && item.shardKey !== undefined)
    throw new PayloadError(
      item.type,
      "key and shardKey cannot be combined: a keyed job goes to its key's shard, so the run accepts the key once",
      index,
    );
  return { ...item, payload: v.payload };
}

/** `put`'s options are its own: anything else (BullMQ's delay, priority, lifo) is refused, not ignored. */
function refuseUnknownPutOptions(type: string, opts: object | undefined): void {
  const unknown = Object.keys(opts ?? {}).filter((o) => !PUT_OPTIONS.has(o));
  if (unknown.length > 0)
    throw new PayloadError(
      type,
      `unknown put option${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (a put takes key, shardKey and timeoutMs; delay, priority and lifo are not supported)`,
    );
}

/** A batch as the run stores it: each job's data is the envelope the consumer reads. */
function storedJobs(runId: string, producerId: string, batch: readonly Routed[]): StoredJob[] {
  return batch.map(({ item, id, seq }) => ({
    id,
    seq,
    name: item.type,
    data: JSON.stringify({
      run: runId,
      producer: producerId,
      payload: item.payload,
      ...(item.timeoutMs !== undefined ? { timeoutMs: item.timeoutMs } : {}),
    }),
  }));
}

/** The incarnation an instance id names (`<id>~<n>`, or 1 for the bare id). */
function incarnationOf(instance: string, producerId: string): number {
  return instance === producerId ? 1 : Number(instance.slice(producerId.length + 1));
}
