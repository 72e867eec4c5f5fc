import { commonShape, nameSchema, parseEnv, toCommonConfig } from '../shared/config.js';
import { runExpiriesKey, runIndexKey, runKeys } from '../shared/keys.js';
import { closeRedis, createRedis, duplicateClient, type RedisClient } from '../shared/redis.js';
import {
  parseRunEvent,
  RunError,
  RunStore,
  type CancelJobResult,
  type CancelRunResult,
} from '../shared/run/run-store.js';
import type { RunResult } from '../shared/run/outcomes.js';
import { streamRunResults, type StreamedResult } from '../shared/run/results-stream.js';
import { readRunResults } from '../shared/run/run-results.js';
import { readRunStatus, type RunStatus } from '../shared/run/status.js';
import { loggerFor, parseOptions, type ConnectionOptions } from './options.js';

/** How long `join()` waits for a run that no producer has created yet before it rejects. */
export const DEFAULT_EXIST_GRACE_MS = 5_000;

export type { RunResult } from '../shared/run/outcomes.js';
export type { StreamedResult } from '../shared/run/results-stream.js';

export type RunHandle = {
  readonly runId: string;
  readonly queue: string;
  /** The run as `conveyor status --json` prints it, or null while the run does not exist. */
  status(): Promise<RunStatus | null>;
  /**
   * The distributed `await queue.join()`: resolves with the run's status once every producer is done
   * and every job it acknowledged has finished, from any process. Listens on the run's events
   * channel and polls as a backstop (a published message can be missed across a reconnect). Rejects
   * on `timeoutMs` or when `signal` aborts, and at once with a RunError for a run that will never join:
   * code `abandoned` (it waited too long for producers that never registered) or `gone` (it existed,
   * but its state is gone from Redis: restarted without persistence, flushed, evicted, or expired
   * after its retention). A run that does not exist yet is waited for `existGraceMs` (default 5 s),
   * then rejected with code `no-run`; pass more when its producers start later.
   */
  join(opts?: {
    timeoutMs?: number;
    signal?: AbortSignal;
    pollMs?: number;
    existGraceMs?: number;
  }): Promise<RunStatus>;
  /**
   * asyncio's `task.cancel()` for the whole run: producers stop, jobs not yet started are cancelled,
   * running ones aborted; the run then joins with the cancelled count (docs/cancel.md). A joined run
   * is left as it is (`outcome: 'joined'`).
   */
  cancel(): Promise<CancelRunResult>;
  /** Cancels one job of the run: waiting, it never runs; running, the consumer holding it aborts it. */
  cancelJob(jobId: string): Promise<CancelJobResult>;
  /**
   * asyncio's `gather(..., return_exceptions=True)` for a run created with collectResults: one entry
   * per put, in put order (per producer instance; puts with an idempotency key last, under `keyed`),
   * each with its outcome: `completed` with its value, `failed` with its error message, `cancelled`,
   * or `removed`. Only once the run has joined: before that it is incomplete, and this rejects saying so.
   */
  results(): Promise<RunResult[]>;
  /**
   * asyncio's `as_completed`: each put's result as its job ends, then (at the join) the puts that
   * ended without reaching a consumer; ends once the run has joined. Each result's `cursor` given
   * back as `after` resumes just past it, from any process (after a disconnect or a restart).
   */
  stream(opts?: { after?: string; pollMs?: number; signal?: AbortSignal }): AsyncGenerator<StreamedResult>;
  /** Asks every consumer of the run (or one, by id) to stop taking work and exit after its jobs. */
  cancelConsumers(reason?: string, consumerId?: string): Promise<void>;
  /** Closes the connections this handle opened (not a `redis` you passed in). */
  close(): Promise<void>;
};

/** A handle on one run of a queue, for status, join and cancel from any process. */
export function openRun(opts: ConnectionOptions & { runId: string; redis?: RedisClient }): RunHandle {
  if (!nameSchema.safeParse(opts.runId).success)
    throw new TypeError(`runId: "${opts.runId}" must be 1-64 characters of letters, digits, "_", "." or "-"`);
  const config = parseOptions((env) => toCommonConfig(parseEnv(commonShape, env)), opts, {});
  const log = loggerFor(opts, 'run');
  const redis = opts.redis ?? createRedis(config, log, `conveyor:run:${opts.runId}`);
  const store = new RunStore(redis, config.queue, opts.runId, config.shards);
  const waiters = new Set<RedisClient>();
  const status = () => readRunStatus(redis, config.queue, opts.runId, config.leaseMs);
  const where = `run "${opts.runId}" on queue "${config.queue}"`;
  const keepsResults = async () => {
    if (!(await store.exists())) throw new Error(`run "${opts.runId}" does not exist`);
    if (!(await store.resultBounds()))
      throw new Error(`run "${opts.runId}" was not created with collectResults: it kept no results`);
  };

  const join: RunHandle['join'] = async ({
    timeoutMs,
    signal,
    pollMs = 1_000,
    existGraceMs = DEFAULT_EXIST_GRACE_MS,
  } = {}) => {
    const subscriber = duplicateClient(redis, `conveyor:join:${opts.runId}`);
    waiters.add(subscriber);
    const check = new AbortController();
    // One wake for the whole wait: an event, the timeout or the caller's abort ends the current
    // pause, and each pause only swaps what wake resolves, so no listener is added per poll.
    let wake: () => void = () => undefined;
    check.signal.addEventListener('abort', () => wake(), { once: true });
    subscriber.on('message', (_channel: string, message: string) => {
      const type = parseRunEvent(message)?.type;
      if (type === 'joined' || type === 'abandoned') wake();
    });
    const timer =
      timeoutMs === undefined
        ? undefined
        : setTimeout(
            () => check.abort(new Error(`run "${opts.runId}" did not join within ${timeoutMs} ms`)),
            timeoutMs,
          );
    const onAbort = () => check.abort(signal?.reason ?? new Error('join aborted'));
    signal?.addEventListener('abort', onAbort, { once: true });
    if (signal?.aborted) onAbort();
    const started = Date.now();
    let seen = false;
    let waitingFor: string | null | undefined;
    try {
      // Subscribed before the first read: a join between the read and the subscription is not missed.
      await subscriber.subscribe(runKeys(config.queue, opts.runId).events);
      for (;;) {
        if (check.signal.aborted) throw check.signal.reason;
        const s = await status();
        if (s?.join.state === 'joined') return s;
        if (s?.join.state === 'abandoned')
          throw new RunError(
            'abandoned',
            `The ${where} was abandoned: ${s.join.abandonReason ?? '?'}. It will never join; start a new run with a new RUN_ID.`,
          );
        let pauseMs = pollMs;
        if (s && s.join.waitingFor !== 'run-not-created') {
          seen = true;
          if (s.join.waitingFor !== waitingFor)
            log.debug({ runId: opts.runId, waitingFor: s.join.waitingFor }, 'waiting for the run to join');
          waitingFor = s.join.waitingFor;
        } else {
          const missing = await whyMissing(redis, config.queue, opts.runId, seen);
          if (missing === 'created') continue;
          if (missing !== 'never') throw goneError(where, missing);
          const left = existGraceMs - (Date.now() - started);
          if (left <= 0)
            throw new RunError(
              'no-run',
              `The ${where} does not exist: no producer created it within ${existGraceMs} ms. Check RUN_ID and QUEUE, or give join() a longer existGraceMs when its producers start later.`,
            );
          pauseMs = Math.min(pollMs, left);
        }
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, pauseMs);
          function done() {
            clearTimeout(t);
            wake = () => undefined;
            resolve();
          }
          wake = done;
        });
      }
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      waiters.delete(subscriber);
      subscriber.disconnect();
    }
  };

  return {
    runId: opts.runId,
    queue: config.queue,
    status,
    join,
    cancel: () => store.cancel(),
    cancelJob: (jobId) => store.cancelJob(jobId),
    cancelConsumers: (reason = 'cancelled', consumerId = '*') => store.requestCancel(consumerId, reason),
    results: async () => {
      await keepsResults();
      if (!(await store.isJoined()))
        throw new Error(
          `run "${opts.runId}" has not joined yet: its results are complete only after the join`,
        );
      return readRunResults(redis, store);
    },
    stream: async function* (streamOpts) {
      await keepsResults();
      yield* streamRunResults(redis, store, streamOpts);
    },
    close: async () => {
      for (const w of waiters) w.disconnect();
      if (!opts.redis) await closeRedis(redis);
    },
  };
}

/**
 * Why a run's record is missing: `created` (a producer created it since the status was read),
 * `expired` (it ended and its retention passed), `lost` (it existed: it was `seen`, or the queue's run
 * index still names it), or `never`. One MULTI, so a run created meanwhile is never taken for lost.
 */
async function whyMissing(
  redis: RedisClient,
  queue: string,
  runId: string,
  seen: boolean,
): Promise<'created' | 'expired' | 'lost' | 'never'> {
  const replies = await redis
    .multi()
    .exists(runKeys(queue, runId).meta)
    .zscore(runIndexKey(queue), runId)
    .zscore(runExpiriesKey(queue), runId)
    .time()
    .exec();
  const [exists, indexed, expiresAt, time] = (replies ?? []).map(([err, value]) => {
    if (err) throw err;
    return value;
  }) as [number, string | null, string | null, [string, string]];
  if (exists === 1) return 'created';
  const now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
  if (expiresAt !== null && Number(expiresAt) <= now) return 'expired';
  return seen || indexed !== null ? 'lost' : 'never';
}

function goneError(where: string, missing: 'expired' | 'lost'): RunError {
  return new RunError(
    'gone',
    missing === 'expired'
      ? `The ${where} has ended and its state is gone from Redis: its keys expired after its retention (RUN_RETENTION_S), so its outcome can no longer be read.`
      : `The ${where} existed, but its state is gone from Redis (restarted without persistence, flushed, or evicted): it can never join. Start a new run with a new RUN_ID.`,
  );
}
