import { UnrecoverableError, type Job } from 'bullmq';
import { readJobData } from '../shared/queue.js';
import { encodeEnded } from '../shared/run/outcomes.js';
import { RunError, type RunStore } from '../shared/run/run-store.js';
import type { ResultBounds } from '../shared/run/types.js';

/**
 * Keeps completed jobs' return values for runs created with collectResults (bounded). A run's
 * bounds are read once; once known, a run that keeps no results costs nothing more per job.
 */
export class ResultKeeper {
  readonly #bounds = new Map<string, ResultBounds | null | Promise<ResultBounds | null>>();

  constructor(private readonly storeOf: (runId: string) => RunStore) {}

  /** True once the run is known to keep no results (then `keep` need not even be awaited). */
  keepsNone(runId: string): boolean {
    return this.#bounds.get(runId) === null;
  }

  /** Stores the value; a value past the run's bounds fails its job for good (a retry returns as much). */
  async keep(runId: string, shard: number, jobId: string, result: unknown): Promise<void> {
    const pending = this.#boundsOf(runId);
    const b = pending instanceof Promise ? await pending : pending;
    if (!b) return;
    try {
      await this.storeOf(runId).storeResult(shard, jobId, JSON.stringify(result ?? null), b);
    } catch (err) {
      if (err instanceof RunError) throw new UnrecoverableError(err.message);
      throw err;
    }
  }

  /** Keeps how a job that did not complete ended (its error, or its cancel), in its slot. */
  async keepEnd(shard: number, job: Job, outcome: 'failed' | 'cancelled', message: string): Promise<void> {
    const data = readJobData(job.data);
    if (!data || data.afterRun || !job.id || this.keepsNone(data.run)) return;
    const pending = this.#boundsOf(data.run);
    const b = pending instanceof Promise ? await pending : pending;
    const stored = b && encodeEnded(outcome, message, b.maxJobBytes);
    if (stored) await this.storeOf(data.run).storeResult(shard, job.id, stored, b, outcome);
  }

  #boundsOf(runId: string): ResultBounds | null | Promise<ResultBounds | null> {
    const known = this.#bounds.get(runId);
    if (known !== undefined) return known;
    const read = this.storeOf(runId).resultBounds();
    this.#bounds.set(runId, read);
    // A failed read is not remembered: the next job of the run reads again.
    read.then(
      (b) => this.#bounds.set(runId, b),
      () => this.#bounds.delete(runId),
    );
    return read;
  }
}
