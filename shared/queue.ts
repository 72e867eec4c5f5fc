import { Queue } from 'bullmq';
import type { RedisClient } from './redis.js';
import { queueShards, type Shard } from './keys.js';

/** What conveyor stores as a BullMQ job's data: the user's payload plus the run it belongs to. */
export type JobData = {
  run: string;
  producer: string;
  payload: unknown;
  /** How long one attempt may run (ms) before it is aborted and fails as timed out. */
  timeoutMs?: number;
  /** Set on a run's join callback: the run it follows (not counted in that run's totals). */
  afterRun?: string;
  /** The callback's name (`on-join`, `on-success`) on a join callback. */
  callback?: string;
  /** Set by the run when it counted the job: taken again, it was put back to work (see reopenLua). */
  counted?: true;
};

export type RetryPolicy = { attempts: number; backoffMs: number; keepCompleted: number; keepFailed: number };

/**
 * The BullMQ options every conveyor job carries: its retry policy. No removeOnComplete/removeOnFail:
 * BullMQ would trim a finished job before its run counted it; conveyor trims counted jobs itself to
 * the run's keep (`keepOf`).
 */
export type ConveyorJobOptions = {
  attempts: number;
  backoff: { type: 'exponential'; delay: number };
};

/** BullMQ job options from a retry policy (tries, first delay doubling): every job's and every callback's. */
export function jobOptions<P extends Pick<RetryPolicy, 'attempts' | 'backoffMs'>>(
  policy: P,
): ConveyorJobOptions {
  return { attempts: policy.attempts, backoff: { type: 'exponential', delay: policy.backoffMs } };
}

/** How many counted finished jobs BullMQ keeps per shard (KEEP_COMPLETED, KEEP_FAILED), for `RunStore.create`. */
export function keepOf(policy: RetryPolicy): { completed: number; failed: number } {
  return { completed: policy.keepCompleted, failed: policy.keepFailed };
}

/**
 * The BullMQ queue for a conveyor queue name, under its cluster hash tag. It always has an 'error'
 * listener: without one BullMQ prints the raw error object, and a failed AUTH's error carries the
 * command that failed, password included. `onError` gets the message only; connection errors are
 * already logged by `createRedis`, so leaving it out loses nothing.
 */
export function openShardQueue(
  shard: Shard,
  connection: RedisClient,
  onError?: (message: string) => void,
): Queue<JobData> {
  const queue = new Queue<JobData>(shard.name, { connection, prefix: shard.prefix });
  queue.on('error', (err: Error) => onError?.(err.message));
  return queue;
}

/** The BullMQ queue of an unsharded conveyor queue. */
export function openQueue(
  name: string,
  connection: RedisClient,
  onError?: (message: string) => void,
): Queue<JobData> {
  return openShardQueue(queueShards(name, 1)[0]!, connection, onError);
}

/** One BullMQ queue per shard of a conveyor queue, in shard order. */
export function openQueues(
  name: string,
  shards: number,
  connection: RedisClient,
  onError?: (message: string) => void,
): Queue<JobData>[] {
  return queueShards(name, shards).map((shard) => openShardQueue(shard, connection, onError));
}

/** Reads a job's data defensively: jobs can be written into Redis by anything. */
export function readJobData(data: unknown): JobData | null {
  if (typeof data !== 'object' || data === null) return null;
  const d = data as Record<string, unknown>;
  if (typeof d.run !== 'string' || typeof d.producer !== 'string') return null;
  const read: JobData = { run: d.run, producer: d.producer, payload: d.payload };
  if (typeof d.timeoutMs === 'number' && Number.isInteger(d.timeoutMs) && d.timeoutMs > 0)
    read.timeoutMs = d.timeoutMs;
  if (d.counted === true) read.counted = true;
  if (typeof d.afterRun === 'string' && typeof d.callback === 'string') {
    read.afterRun = d.afterRun;
    read.callback = d.callback;
  }
  return read;
}
