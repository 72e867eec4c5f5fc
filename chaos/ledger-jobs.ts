import { appendFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJob } from '../shared/jobs/define.js';

/**
 * The chaos harness's job type, loaded into producers and consumers with JOB_MODULES. Its handler
 * appends `start <id> <pid> <attempt>` before the work and `finish <id> <pid>` after it to the file
 * named by LEDGER_FILE (one small O_APPEND write each, so lines from concurrent processes never mix).
 *
 * A job module is loaded by the consumer, not called by the harness, so this is the one place outside
 * a main.ts that reads the environment: LEDGER_FILE is the harness's side channel, not configuration.
 * `crash: true` makes the handler SIGKILL its own process on every attempt (the poison job).
 */
export const ledgerJob = defineJob({
  name: 'ledger',
  schema: z.strictObject({
    ms: z.number().int().min(0).max(3_600_000),
    crash: z.boolean().optional(),
    pad: z.string().max(60_000).optional(),
  }),
  handler: async ({ ms, crash }, { jobId, attempt, signal }) => {
    const file = process.env.LEDGER_FILE;
    if (file) appendFileSync(file, `start ${jobId} ${process.pid} ${attempt}\n`);
    if (crash) process.kill(process.pid, 'SIGKILL');
    if (ms > 0) await sleep(ms, undefined, { signal });
    if (file) appendFileSync(file, `finish ${jobId} ${process.pid}\n`);
    return null;
  },
});
