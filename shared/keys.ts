import calculateSlot from 'cluster-key-slot';

const SLOTS = 16_384;

/**
 * Every key of a queue and of its runs shares one Redis Cluster hash tag, `{<queue>}`, so BullMQ's
 * scripts and conveyor's run scripts each touch a single slot.
 */
export function queuePrefix(queue: string): string {
  return `{${queue}}`;
}

/**
 * One of the BullMQ queues a logical queue is spread over. With one shard it is the queue itself
 * (name and keys as without sharding); with k shards, shard i is BullMQ queue `<queue>#<i>` under a
 * hash tag chosen to fall well inside the i-th k-th of the slot space, which `redis-cli --cluster
 * create` gives to a different master when there are k masters.
 */
export type Shard = {
  index: number;
  /** BullMQ queue name. */
  name: string;
  /** BullMQ key prefix: the shard's hash tag in braces. */
  prefix: string;
  /** The Redis Cluster slot every key of this shard hashes to. */
  slot: number;
};

export function queueShards(queue: string, count: number): Shard[] {
  if (count === 1)
    return [{ index: 0, name: queue, prefix: queuePrefix(queue), slot: calculateSlot(`{${queue}}`) }];
  return Array.from({ length: count }, (_, index) => {
    // The middle half of the i-th k-th of the slots: redis-cli rounds its range edges its own way,
    // so a slot near an edge could belong to the neighbouring master.
    const width = SLOTS / count;
    const low = Math.ceil(index * width + width / 4);
    const high = Math.floor((index + 1) * width - width / 4);
    // '#' never appears in a queue name, so no shard can collide with another queue's keys.
    const name = `${queue}#${index}`;
    for (let salt = 0; ; salt++) {
      const tag = `${name}.${salt}`;
      const slot = calculateSlot(`{${tag}}`);
      if (slot >= low && slot < high) return { index, name, prefix: `{${tag}}`, slot };
    }
  });
}

/** The shard a routing key goes to: the same key always to the same shard, so its jobs stay in order. */
export function shardForKey(key: string, count: number): number {
  return calculateSlot(key) % count;
}

/** Prefix of BullMQ's own per-job keys (`<prefix>:<queue>:<jobId>`) and of its lists (`...:wait`). */
export function shardJobPrefix(shard: Shard): string {
  return `${shard.prefix}:${shard.name}:`;
}

/** The job key prefix of an unsharded queue (one shard). */
export function bullKeyPrefix(queue: string): string {
  return `${queuePrefix(queue)}:${queue}:`;
}

/** A run's keys that concern the run as a whole; they live in the queue's own slot. */
export type RunKeys = {
  /** Hash: run metadata and the join record (with one shard, also the shard's counters). */
  meta: string;
  /** Hash: producer id → JSON record. */
  producers: string;
  /** Sorted set: running producer id → lease expiry (ms since epoch, Redis clock). */
  leases: string;
  /** Hash: consumer id → JSON record. */
  consumers: string;
  /** Set: consumer ids asked to cancel ('*' = all). */
  cancel: string;
  /** Pub/sub channel for run events (joined, cancel, cancel-job, cancel-run). */
  events: string;
  /** Sorted set: consumer id → its last heartbeat (ms, Redis clock). */
  beats: string;
  /** Set: running producers whose lease was pushed back for an outage and who have not heartbeated since. */
  credited: string;
  /** Set: dead producer instances (lost or superseded) not yet settled on every shard. */
  unsettled: string;
};

/**
 * Job ids. Every id begins with its run's id prefix `<run>+<n>`, where n numbers the run's creation
 * on its queue (a run id used again after its retention gets a new one), then `+<instance>+<seq>`
 * for a producer's put, `=<key>` for a put with an idempotency key, `@<name>` for a join callback.
 * Names never contain '+', '=' or '@', so no two of these can be equal: ids are unique across runs,
 * creations of one run id, producers, keys and callbacks by construction.
 */
export function runIdPrefix(runId: string, creation: number): string {
  return `${runId}+${creation}`;
}

export function putJobId(idPrefix: string, instance: string, seq: number): string {
  return `${idPrefix}+${instance}+${seq}`;
}

export function keyedJobId(idPrefix: string, key: string): string {
  return `${idPrefix}=${key}`;
}

export function callbackJobId(idPrefix: string, name: string): string {
  return `${idPrefix}@${name}`;
}

/** The run creation a job id belongs to (its `<run>+<n>`), or null for an id conveyor did not make. */
export function idPrefixOfJob(id: string): string | null {
  return /^([^+=@]+\+\d+)[+=@]/.exec(id)?.[1] ?? null;
}

/** What a job id says about its origin, or null when it is not one of `idPrefix`'s ids. */
export function parseJobId(
  idPrefix: string,
  id: string,
):
  | { kind: 'put'; instance: string; seq: number }
  | { kind: 'keyed'; key: string }
  | { kind: 'callback'; name: string }
  | null {
  if (!id.startsWith(idPrefix)) return null;
  const rest = id.slice(idPrefix.length + 1);
  switch (id[idPrefix.length]) {
    case '+': {
      const cut = rest.lastIndexOf('+');
      const seq = Number(rest.slice(cut + 1));
      return cut > 0 && Number.isInteger(seq) ? { kind: 'put', instance: rest.slice(0, cut), seq } : null;
    }
    case '=':
      return { kind: 'keyed', key: rest };
    case '@':
      return { kind: 'callback', name: rest };
    default:
      return null;
  }
}

/** A run's keys on one shard; they live in that shard's slot, beside its BullMQ keys. */
export type ShardRunKeys = {
  /** Hash: the shard's counters, and its close record. With one shard this is the run's meta. */
  meta: string;
  /** Set: job ids acknowledged by a producer that have not reached a terminal state. */
  open: string;
  /** Set: job ids put with an idempotency key and acknowledged (outlives BullMQ's trimming). */
  keyed: string;
  /** Hash: producer id → how many of its jobs this shard acknowledged. */
  producedBy: string;
  /** Hash: open job id → when the join check first found its BullMQ job gone or finished (ms, Redis clock). */
  suspect: string;
  /** Set: producer instances that may put no more here (lost, superseded, or done). */
  fenced: string;
  /** Set: job ids someone cancelled (one by one, or swept out of a cancelled run). */
  cancelled: string;
  /** Hash: job id → its return value (JSON) or how it ended otherwise, for a run created with collectResults. */
  results: string;
  /** Stream: the run's jobs in the order they ended here (`job`, `outcome`), for a run created with collectResults. */
  finished: string;
  /** BullMQ's failed set of this shard. */
  failed: string;
  /** BullMQ's completed set of this shard. */
  completed: string;
  /** Prefix of the instances' put bitmaps (see putsKey). */
  putsPrefix: string;
  /**
   * Lists, queue-wide on this shard: counted finished jobs, newest first. conveyor trims BullMQ's
   * completed and failed sets from these (KEEP_COMPLETED, KEEP_FAILED), so a job leaves BullMQ only
   * after its run counted it.
   */
  countedCompleted: string;
  countedFailed: string;
  /** BullMQ's per-job key prefix for this shard. */
  jobPrefix: string;
};

const runBase = (prefix: string, queue: string, runId: string) => `${prefix}:${queue}:conveyor:run:${runId}`;

export function runKeys(queue: string, runId: string): RunKeys {
  const base = runBase(queuePrefix(queue), queue, runId);
  return {
    meta: `${base}:meta`,
    producers: `${base}:producers`,
    leases: `${base}:leases`,
    consumers: `${base}:consumers`,
    cancel: `${base}:cancel`,
    events: `${base}:events`,
    beats: `${base}:beats`,
    credited: `${base}:credited`,
    unsettled: `${base}:unsettled`,
  };
}

export function shardRunKeys(shard: Shard, runId: string): ShardRunKeys {
  const base = runBase(shard.prefix, shard.name, runId);
  return {
    meta: `${base}:meta`,
    open: `${base}:open`,
    keyed: `${base}:keyed`,
    producedBy: `${base}:produced-by`,
    suspect: `${base}:suspect`,
    fenced: `${base}:fenced`,
    cancelled: `${base}:cancelled`,
    results: `${base}:results`,
    finished: `${base}:finished`,
    failed: `${shardJobPrefix(shard)}failed`,
    completed: `${shardJobPrefix(shard)}completed`,
    putsPrefix: `${base}:puts:`,
    countedCompleted: `${shardJobPrefix(shard)}conveyor:counted:completed`,
    countedFailed: `${shardJobPrefix(shard)}conveyor:counted:failed`,
    jobPrefix: shardJobPrefix(shard),
  };
}

/**
 * An instance's put bitmap on a shard, in one creation of the run: bit <seq> is set once that put's
 * job is stored there, so a put sent again (in any order, fenced or not) is recognised. Named by the
 * creation, so a run id used again never finds an earlier creation's bits.
 */
export function putsKey(keys: ShardRunKeys, idPrefix: string, instance: string): string {
  return `${keys.putsPrefix}${idPrefix.slice(idPrefix.lastIndexOf('+') + 1)}:${instance}`;
}

/** Sorted set of run ids by creation time, for "the latest run" and run selectors. */
export function runIndexKey(queue: string): string {
  return `${queuePrefix(queue)}:${queue}:conveyor:runs`;
}

/** Counter of run creations on a queue: the n in every job id's `<run>+<n>`. */
export function runCreationsKey(queue: string): string {
  return `${queuePrefix(queue)}:${queue}:conveyor:run-creations`;
}

/**
 * Sorted set of runs not yet joined, scored by when each is next due for a join check (ms, Redis
 * clock; a new run is due at once): the ones a worker without RUN_ID checks, the most overdue first.
 */
export function pendingRunsKey(queue: string): string {
  return `${queuePrefix(queue)}:${queue}:conveyor:pending-runs`;
}

/** Sorted set of joined runs by when their retention ends, so the run index can forget them. */
export function runExpiriesKey(queue: string): string {
  return `${queuePrefix(queue)}:${queue}:conveyor:run-expiries`;
}

/** Pattern matching every run's events channel on a queue (what a worker without RUN_ID listens to). */
export function runEventsPattern(queue: string): string {
  return `${runBase(queuePrefix(queue), queue, '*')}:events`;
}

/**
 * Sorted set of joined runs whose callbacks are not all delivered yet (the outbox), scored by when
 * each is next due for a delivery attempt (ms, Redis clock; due at once when the run joins).
 */
export function callbacksDueKey(queue: string): string {
  return `${queuePrefix(queue)}:${queue}:conveyor:callbacks-due`;
}
