import { commonShape, nameSchema, parseEnv, toCommonConfig } from '../shared/config.js';
import { closeRedis, createRedis, type RedisClient } from '../shared/redis.js';
import { RunError, RunStore, type CancelJobResult, type CancelRunResult } from '../shared/run/run-store.js';
import type { RunResult } from '../shared/run/outcomes.js';
import { streamRunResults, type StreamedResult } from '../shared/run/results-stream.js';
import { readRunResults } from '../shared/run/run-results.js';
import { readRunStatus, type RunStatus } from '../shared/run/status.js';
import { loggerFor, parseOptions, type ConnectionOptions } from './options.js';
import { joinRun, type JoinOptions } from './run-join.js';

export { DEFAULT_EXIST_GRACE_MS } from './run-join.js';

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
  join(opts?: JoinOptions): Promise<RunStatus>;
  /**
   * asyncio's `task.cancel()` for the whole run: producers stop, jobs not yet started are cancelled,
   * running ones aborted; the run then joins with the cancelled count (docs/cancel.md). A joined run
   * is left as it is (`outcome: 'joined'`). `by` and `reason` are shown in status (first cancel only).
   */
  cancel(who?: { by?: string; reason?: string }): Promise<CancelRunResult>;
  /** Cancels one job of the run: waiting, it never runs; running, the consumer holding it aborts it. */
  cancelJob(jobId: string): Promise<CancelJobResult>;
  /**
   * asyncio's `gather(..., return_exceptions=True)` for a run created with collectResults: one entry
   * per put, in put order (per producer instance; puts with an idempotency key last, under `keyed`),
   * each with its outcome: `completed` with its value, `failed` with its error message, `cancelled`,
   * or `removed`. Only once the run has joined: before that it is incomplete, and this rejects saying so
   * (a RunError, code `not-joined`; `no-results` for a run without collectResults, `no-run` for none).
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

/** Throws a TypeError naming the option for a run id the protocol would refuse. */
export function assertRunId(runId: string): void {
  if (!nameSchema.safeParse(runId).success)
    throw new TypeError(`runId: "${runId}" must be 1-64 characters of letters, digits, "_", "." or "-"`);
}

/** A handle on one run of a queue, for status, join and cancel from any process. */
export function openRun(opts: ConnectionOptions & { runId: string; redis?: RedisClient }): RunHandle {
  assertRunId(opts.runId);
  const config = parseOptions((env) => toCommonConfig(parseEnv(commonShape, env)), opts, {});
  const log = loggerFor(opts, 'run');
  const redis = opts.redis ?? createRedis(config, log, `conveyor:run:${opts.runId}`);
  const store = new RunStore(redis, config.queue, opts.runId, config.shards);
  const waiters = new Set<RedisClient>();
  const status = () => readRunStatus(redis, config.queue, opts.runId, config.leaseMs);
  const keepsResults = async () => {
    if (!(await store.exists())) throw new RunError('no-run', `run "${opts.runId}" does not exist`);
    if (!(await store.resultBounds()))
      throw new RunError(
        'no-results',
        `run "${opts.runId}" was not created with collectResults: it kept no results`,
      );
  };

  return {
    runId: opts.runId,
    queue: config.queue,
    status,
    join: (joinOpts) =>
      joinRun({ redis, queue: config.queue, runId: opts.runId, status, log, waiters }, joinOpts),
    cancel: (who) => store.cancel(who),
    cancelJob: (jobId) => store.cancelJob(jobId),
    cancelConsumers: (reason = 'cancelled', consumerId = '*') => store.requestCancel(consumerId, reason),
    results: async () => {
      await keepsResults();
      if (!(await store.isJoined()))
        throw new RunError(
          'not-joined',
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
