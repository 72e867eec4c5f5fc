import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJob } from '../shared/jobs/define.js';
import { callbackPayload } from '../shared/jobs/run-report-job.js';

/**
 * The soak's job types, loaded into consumers with JOB_MODULES and imported by its library
 * producer. Every execution is written to the handler ledger (SOAK_LEDGER), one O_APPEND write per
 * line so lines of concurrent processes never mix:
 *
 *   start <tag> <jobId> <pid> <attempt> <ms>      end <tag> <jobId> <pid> ok|fail|abort <ms>
 *   cb-start <tag> <run> <pid> <ms>               cb-end <tag> <run> <pid> <ms>
 *
 * `tag` is the soak's name for one run (r01...): a run id used again gets a new tag, so the ledger
 * tells the two apart although their job ids are the same.
 *
 * Like chaos/ledger-jobs.ts this module reads the environment, as consumers load it rather than the
 * soak calling it: SOAK_LEDGER, and SOAK_SLOW_DIR/SOAK_SLOW_MS, where the soak leaves a marker file
 * `<tag>_<jobId>` before it retries a job, so the retried execution runs long enough for a run
 * that joins too early to be seen doing so.
 */
export const soakWork = defineJob({
  name: 'soak-work',
  schema: z.strictObject({
    tag: z.string().regex(/^[a-z0-9]{1,16}$/),
    ms: z.number().int().min(0).max(60_000),
    /** Attempts 1..failAttempts throw. */
    failAttempts: z.number().int().min(0).max(100).optional(),
  }),
  handler: async ({ tag, ms, failAttempts }, { jobId, attempt, signal }) => {
    write(`start ${tag} ${jobId} ${process.pid} ${attempt} ${Date.now()}`);
    let outcome = 'fail';
    try {
      await sleep(slowMarked(tag, jobId) ?? ms, undefined, { signal });
      if (attempt <= (failAttempts ?? 0)) throw new Error(`soak: attempt ${attempt} fails as planned`);
      outcome = 'ok';
      return null;
    } finally {
      if (signal.aborted) outcome = 'abort';
      write(`end ${tag} ${jobId} ${process.pid} ${outcome} ${Date.now()}`);
    }
  },
});

/** The soak's join callback: records each execution, so "exactly once" can be counted. */
export const soakJoined = defineJob({
  name: 'soak-joined',
  schema: callbackPayload(z.strictObject({ tag: z.string().regex(/^[a-z0-9]{1,16}$/) })),
  handler: async ({ run, payload, totals }) => {
    write(`cb-start ${payload.tag} ${run} ${process.pid} ${Date.now()}`);
    await sleep(5);
    write(`cb-end ${payload.tag} ${run} ${process.pid} ${Date.now()}`);
    return totals;
  },
});

export const soakJobs = [soakWork, soakJoined];

function write(line: string): void {
  const file = process.env.SOAK_LEDGER;
  if (file) appendFileSync(file, `${line}\n`);
}

function slowMarked(tag: string, jobId: string): number | undefined {
  const dir = process.env.SOAK_SLOW_DIR;
  if (!dir || !existsSync(join(dir, slowMarkerName(tag, jobId)))) return undefined;
  return Number(process.env.SOAK_SLOW_MS ?? '4000');
}

/** The marker file the soak writes before retrying `jobId` of run `tag`. */
export const slowMarkerName = (tag: string, jobId: string): string => `${tag}_${jobId}`;
