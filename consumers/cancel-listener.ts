import type { Logger } from '../shared/logger.js';
import { runEventsPattern } from '../shared/keys.js';
import type { RedisClient } from '../shared/redis.js';
import { parseRunEvent, type RunStore } from '../shared/run/run-store.js';
import type { JobControl } from './job-control.js';

/** Run ids whose cancelled-job counts are remembered (past it the memory starts over). */
const RUNS_REMEMBERED = 64;

/**
 * Turns cancels into aborts of the jobs this consumer runs: from the run's events channel as they
 * happen, and from the run's records (`catchUp`) for what was cancelled before it listened or while
 * a message was lost (the heartbeat repeats that as a backstop).
 */
export class CancelListener {
  readonly #cancelCounts = new Map<string, number[]>();

  constructor(
    private readonly control: JobControl,
    private readonly log: Logger,
  ) {}

  /**
   * Subscribes `subscriber`: to its run's events, where `onRunEvent` also hears the run's join,
   * abandonment and consumer cancels; without a run, to every run's events on the queue (a worker
   * without RUN_ID serves them all).
   */
  async listen(
    subscriber: RedisClient,
    run: RunStore | null,
    queue: string,
    onRunEvent: (event: NonNullable<ReturnType<typeof parseRunEvent>>) => void,
  ): Promise<void> {
    subscriber.on('error', (err: Error) => this.log.debug({ err: err.message }, 'subscriber error'));
    if (run) {
      subscriber.on('message', (_channel: string, message: string) => {
        const event = parseRunEvent(message);
        this.onEvent(event);
        if (event) onRunEvent(event);
      });
      await subscriber.subscribe(run.keys.events);
      return;
    }
    subscriber.on('pmessage', (_pattern: string, _channel: string, message: string) =>
      this.onEvent(parseRunEvent(message)),
    );
    // An ACL grants a pattern subscription only for a pattern it lists verbatim (docs/security.md):
    // without it, cancels reach this worker through its heartbeat instead.
    await subscriber
      .psubscribe(runEventsPattern(queue))
      .catch((err: unknown) =>
        this.log.warn(
          { err: err instanceof Error ? err.message : String(err) },
          "cannot listen to every run's events: cancels reach this worker on its heartbeat instead",
        ),
      );
  }

  /** Aborts what a cancel event names, if this consumer runs it. */
  onEvent(event: ReturnType<typeof parseRunEvent>): void {
    if (event?.type === 'cancel-job' && this.control.cancelJob(event.jobId))
      this.log.info({ jobId: event.jobId }, 'job cancelled while running: aborting its handler');
    if (event?.type === 'cancel-run' && !this.control.isRunCancelled(event.creation)) {
      const n = this.control.cancelRun(event.creation);
      this.log.info({ cancelledRun: event.run, aborted: n }, 'run cancelled: aborting its running jobs');
    }
  }

  /** Applies what the run's records say was cancelled (only what is new since the last look). */
  async catchUp(store: RunStore): Promise<void> {
    const creation = await store.cancelledCreation();
    if (creation !== null && !this.control.isRunCancelled(creation))
      this.onEvent({ type: 'cancel-run', run: store.runId, creation, at: 0 });
    const seen = await store.cancelledJobs(this.#cancelCounts.get(store.runId));
    if (this.#cancelCounts.size >= RUNS_REMEMBERED && !this.#cancelCounts.has(store.runId))
      this.#cancelCounts.clear();
    this.#cancelCounts.set(store.runId, seen.counts);
    for (const jobId of seen.ids) this.onEvent({ type: 'cancel-job', run: store.runId, jobId, at: 0 });
  }
}
