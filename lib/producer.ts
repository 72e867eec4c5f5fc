import type { AnyJobDefinition } from '../shared/jobs/define.js';
import { builtinJobs, JobRegistry } from '../shared/jobs/index.js';
import { loadProducerConfig } from '../producers/config.js';
import { openProducerClient, type ProducerClient } from '../producers/open.js';
import { loggerFor, parseOptions, type ConnectionOptions } from './options.js';

export type { ProducerClient, ProducerClientState } from '../producers/open.js';

export type ProducerOptions = ConnectionOptions & {
  /** The run to put into; `auto`: the queue's open run, or a new one once the last has joined. */
  runId: string;
  /** How many producers the run expects (it joins only once that many reported done); default 1. */
  producers?: number;
  /** Default `<host>-<pid>`. */
  producerId?: string;
  /** Your job types (the built-in `sleep` and `fetch` are always there). */
  jobs?: readonly AnyJobDefinition[];
  /** Tries per job (default 3) and the first retry's delay (default 1000 ms, doubling). */
  attempts?: number;
  backoffMs?: number;
  /** Finished jobs BullMQ keeps per shard (defaults 1000 completed, 10000 failed). */
  keepCompleted?: number;
  keepFailed?: number;
  /** How long a joined run's keys stay in Redis (s, default 7 days; 0 = for ever). */
  retentionS?: number;
  /** How long a lone put waits for concurrent ones to share its script call (ms, default 0). */
  putLingerMs?: number;
  /**
   * A job enqueued exactly once when the run joins (`onSuccess`: only when no job failed or was
   * removed). Its payload is `callbackPayload(...)`: the run id, final totals, failed job ids and
   * `payload`. Set by whichever producer creates the run; a callback may open the next run.
   */
  onJoin?: { type: string; payload?: unknown };
  onSuccess?: { type: string; payload?: unknown };
  /** The run whose join callback starts this one (shown as its predecessor in status). */
  afterRun?: string;
  /**
   * Keep how each job ended (its return value as JSON, or its error), for `openRun(...).results()`
   * (one entry per put, in put order, once the run has joined) and `stream()`. Bounded: `maxJobBytes` per job (default 64 KiB), `maxRunBytes` per run and shard (default
   * 64 MiB); a value past a bound fails its job with an error saying so.
   */
  collectResults?: boolean | { maxJobBytes?: number; maxRunBytes?: number };
};

/**
 * Opens a producer: creates the run if needed, registers this producer in it and keeps its lease
 * alive until `done()`. Payloads are validated against their job type before anything is sent.
 * Refuses a Redis that may evict keys (EvictionPolicyError); `runId: 'auto'` means the queue's open
 * run, or the next one, as for the commands.
 */
export async function openProducer(opts: ProducerOptions): Promise<ProducerClient> {
  const results = typeof opts.collectResults === 'object' ? opts.collectResults : {};
  const json = (v: unknown) => (v === undefined ? undefined : JSON.stringify(v));
  const config = parseOptions(loadProducerConfig, opts, {
    RUN_ID: ['runId', opts.runId],
    PRODUCERS: ['producers', opts.producers ?? 1],
    PRODUCER_ID: ['producerId', opts.producerId],
    ATTEMPTS: ['attempts', opts.attempts],
    BACKOFF_MS: ['backoffMs', opts.backoffMs],
    KEEP_COMPLETED: ['keepCompleted', opts.keepCompleted],
    KEEP_FAILED: ['keepFailed', opts.keepFailed],
    RUN_RETENTION_S: ['retentionS', opts.retentionS],
    PUT_LINGER_MS: ['putLingerMs', opts.putLingerMs],
    ON_JOIN_TYPE: ['onJoin.type', opts.onJoin?.type],
    ON_JOIN_PAYLOAD: ['onJoin.payload', json(opts.onJoin?.payload)],
    ON_SUCCESS_TYPE: ['onSuccess.type', opts.onSuccess?.type],
    ON_SUCCESS_PAYLOAD: ['onSuccess.payload', json(opts.onSuccess?.payload)],
    COLLECT_RESULTS: ['collectResults', opts.collectResults ? true : undefined],
    RESULT_MAX_BYTES: ['collectResults.maxJobBytes', results.maxJobBytes],
    RUN_RESULTS_MAX_BYTES: ['collectResults.maxRunBytes', results.maxRunBytes],
  });
  const registry = new JobRegistry([...builtinJobs, ...(opts.jobs ?? [])]);
  for (const cb of config.callbacks)
    if (!registry.get(cb.type))
      throw new TypeError(
        `${cb.name === 'on-join' ? 'onJoin' : 'onSuccess'}.type: unknown job type "${cb.type}" (known: ${registry.names().join(', ')})`,
      );
  return openProducerClient(config, {
    registry,
    log: loggerFor(opts, 'producer'),
    afterRun: opts.afterRun,
  });
}
