import { runExpiriesKey, runIndexKey, runKeys } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import { duplicateClient, type RedisClient } from '../shared/redis.js';
import { parseRunEvent, RunError } from '../shared/run/run-store.js';
import type { RunStatus } from '../shared/run/status.js';

/** How long `join()` waits for a run that no producer has created yet before it rejects. */
export const DEFAULT_EXIST_GRACE_MS = 5_000;

export type JoinOptions = {
  timeoutMs?: number;
  signal?: AbortSignal;
  pollMs?: number;
  existGraceMs?: number;
};

export type JoinDeps = {
  redis: RedisClient;
  queue: string;
  runId: string;
  status: () => Promise<RunStatus | null>;
  log: Logger;
  /** The subscribers of joins under way, so the handle's close can end them. */
  waiters: Set<RedisClient>;
};

/**
 * Waits for a run's join (RunHandle.join): the run's events channel wakes each look at its status,
 * and a poll every `pollMs` is the backstop for a message missed across a reconnect.
 */
export async function joinRun(
  deps: JoinDeps,
  { timeoutMs, signal, pollMs = 1_000, existGraceMs = DEFAULT_EXIST_GRACE_MS }: JoinOptions = {},
): Promise<RunStatus> {
  const { redis, queue, runId, log } = deps;
  const where = `run "${runId}" on queue "${queue}"`;
  const subscriber = duplicateClient(redis, `conveyor:join:${runId}`);
  deps.waiters.add(subscriber);
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
          () => check.abort(new Error(`run "${runId}" did not join within ${timeoutMs} ms`)),
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
    await subscriber.subscribe(runKeys(queue, runId).events);
    for (;;) {
      if (check.signal.aborted) throw check.signal.reason;
      const s = await deps.status();
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
          log.debug({ runId, waitingFor: s.join.waitingFor }, 'waiting for the run to join');
        waitingFor = s.join.waitingFor;
      } else {
        const missing = await whyMissing(redis, queue, runId, seen);
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
    deps.waiters.delete(subscriber);
    subscriber.disconnect();
  }
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
