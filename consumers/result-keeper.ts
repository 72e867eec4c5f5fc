import { UnrecoverableError } from 'bullmq';
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
