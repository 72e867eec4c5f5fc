import { z } from 'zod';
import { defineJob } from './define.js';

/**
 * The payload of every join callback (`ON_JOIN_TYPE`, `ON_SUCCESS_TYPE`, the library's `onJoin` and
 * `onSuccess`): the run it follows, its final totals, the ids of its failed jobs (at most 100, with a
 * count of the rest) and the payload the run was created with. A callback job type's schema is
 * `callbackPayload(<schema of your payload>)`.
 */
export function callbackPayload<P extends z.ZodType>(payload: P) {
  return z.object({
    run: z.string(),
    callback: z.string(),
    totals: z.object({
      produced: z.number().int(),
      completed: z.number().int(),
      failed: z.number().int(),
      removed: z.number().int(),
      lostProducers: z.number().int(),
    }),
    failedJobIds: z.array(z.string()),
    failedJobsMore: z.number().int(),
    payload,
  });
}

/** A join callback that logs the run it follows and returns its totals (`ON_JOIN_TYPE=run-report`). */
export const runReportJob = defineJob({
  name: 'run-report',
  schema: callbackPayload(z.unknown()),
  handler: (p, { log }) => {
    log.info(
      {
        afterRun: p.run,
        callback: p.callback,
        totals: p.totals,
        failedJobIds: p.failedJobIds,
        payload: p.payload,
      },
      `run "${p.run}" joined: ${p.totals.completed} completed, ${p.totals.failed} failed`,
    );
    return Promise.resolve(p.totals);
  },
});
