/** How a put ended, as `results()` and `gather` report it (removed: deleted from the queue by hand). */
export type JobOutcome = 'completed' | 'failed' | 'cancelled' | 'removed';

/** One put of a run: its job, the producer instance that put it, and how it ended. */
export type RunResult = { jobId: string; producer: string } & (
  | { outcome: 'completed'; value: unknown }
  | { outcome: 'failed'; error: string }
  | { outcome: 'cancelled'; error?: string }
  | { outcome: 'removed' }
);

/** What the run's results hash holds for one job (a completed value, or how the job ended otherwise). */
export type StoredOutcome =
  { outcome: 'completed'; value: unknown } | { outcome: 'failed' | 'cancelled'; error: string };

/**
 * A completed job's value is stored as its JSON, as it was returned. A job that ended otherwise is
 * stored as '!' and a JSON record: no JSON text begins with '!', so the two never mix up.
 */
const ENDED = '!';

/**
 * The stored form of a job that failed or was cancelled, its message cut so the whole fits
 * `maxBytes`; null when not even an empty message fits (results() then reads BullMQ's record).
 */
export function encodeEnded(outcome: 'failed' | 'cancelled', error: string, maxBytes: number): string | null {
  const encode = (message: string) => ENDED + JSON.stringify({ outcome, error: message });
  if (Buffer.byteLength(encode('')) > maxBytes) return null;
  const bytes = Buffer.from(error);
  // Cut by bytes (dropping a character cut in two) until the whole, escapes included, fits.
  const cut = (n: number) =>
    bytes
      .subarray(0, Math.max(0, n))
      .toString()
      .replace(/\uFFFD$/, '');
  let budget = maxBytes - Buffer.byteLength(encode(''));
  let message = cut(budget);
  for (let over = Buffer.byteLength(encode(message)) - maxBytes; over > 0;) {
    budget -= over;
    message = cut(budget);
    over = Buffer.byteLength(encode(message)) - maxBytes;
  }
  return encode(message);
}

export function decodeStored(raw: string): StoredOutcome {
  if (!raw.startsWith(ENDED)) return { outcome: 'completed', value: JSON.parse(raw) as unknown };
  const record = JSON.parse(raw.slice(ENDED.length)) as { outcome: 'failed' | 'cancelled'; error: string };
  return { outcome: record.outcome, error: record.error };
}

/** A slot as `gather` prints it: a completed job's value, else what happened instead. */
export function slotOf(r: RunResult): unknown {
  if (r.outcome === 'completed') return r.value;
  if (r.outcome === 'removed' || (r.outcome === 'cancelled' && r.error === undefined))
    return { outcome: r.outcome };
  return { outcome: r.outcome, error: r.error };
}

/** `status --results`: one line per put, its job id, outcome and value or error. */
export function formatRunResults(results: readonly RunResult[]): string {
  return results
    .map((r) => {
      const detail =
        r.outcome === 'completed'
          ? JSON.stringify(r.value)
          : r.outcome === 'removed' || r.error === undefined
            ? ''
            : r.error;
      return `${r.jobId}  ${r.outcome.padEnd(9)}  ${detail}`.trimEnd();
    })
    .join('\n');
}
