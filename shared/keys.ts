/**
 * Every key of a queue and of its runs shares one Redis Cluster hash tag, `{<queue>}`, so BullMQ's
 * scripts and conveyor's run scripts each touch a single slot.
 */
export function queuePrefix(queue: string): string {
  return `{${queue}}`;
}

/** Prefix of BullMQ's own per-job keys (`<prefix>:<queue>:<jobId>`) and of its lists (`...:wait`). */
export function bullKeyPrefix(queue: string): string {
  return `${queuePrefix(queue)}:${queue}:`;
}

export type RunKeys = {
  /** Hash: run metadata, counters and the join record. */
  meta: string;
  /** Hash: producer id → JSON record. */
  producers: string;
  /** Sorted set: running producer id → lease expiry (ms since epoch, Redis clock). */
  leases: string;
  /** Set: job ids acknowledged by a producer that have not reached a terminal state. */
  open: string;
  /** Set: job ids that reached a terminal state before their producer acknowledged them. */
  early: string;
  /** Set: job ids put with an idempotency key and acknowledged (outlives BullMQ's trimming). */
  keyed: string;
  /** Hash: consumer id → JSON record. */
  consumers: string;
  /** Set: consumer ids asked to cancel ('*' = all). */
  cancel: string;
  /** Pub/sub channel for run events (joined, cancel). */
  events: string;
  /** Prefix of a producer's in-flight set (ids sent to Redis, not yet acknowledged). */
  inflightPrefix: string;
  /** BullMQ's per-job key prefix for this queue. */
  jobPrefix: string;
};

export function runKeys(queue: string, runId: string): RunKeys {
  const base = `${queuePrefix(queue)}:${queue}:conveyor:run:${runId}`;
  return {
    meta: `${base}:meta`,
    producers: `${base}:producers`,
    leases: `${base}:leases`,
    open: `${base}:open`,
    early: `${base}:early`,
    keyed: `${base}:keyed`,
    consumers: `${base}:consumers`,
    cancel: `${base}:cancel`,
    events: `${base}:events`,
    inflightPrefix: `${base}:inflight:`,
    jobPrefix: bullKeyPrefix(queue),
  };
}

/** Sorted set of run ids by creation time, for "the latest run" and run selectors. */
export function runIndexKey(queue: string): string {
  return `${queuePrefix(queue)}:${queue}:conveyor:runs`;
}
