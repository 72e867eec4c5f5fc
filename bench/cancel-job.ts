import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJob } from '../shared/jobs/define.js';

/** bench:cancel's job: waits until aborted and logs when it started and when it saw the abort. */
export const benchWait = defineJob({
  name: 'bench-wait',
  schema: z.strictObject({}),
  handler: async (_payload, { signal, log }) => {
    log.info({ startedAt: Date.now() }, 'bench job started');
    try {
      await sleep(600_000, undefined, { signal });
    } catch (err) {
      log.info({ abortedAt: Date.now() }, 'bench job aborted');
      throw err;
    }
  },
});
