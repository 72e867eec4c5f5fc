import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJob } from './define.js';

/** Waits `ms`, then returns its value: the built-in job for demos and benchmarks. */
export const sleepJob = defineJob({
  name: 'sleep',
  schema: z.strictObject({
    value: z.number().int(),
    ms: z.number().int().min(0).max(3_600_000),
  }),
  handler: async ({ value, ms }, { signal }) => {
    await sleep(ms, undefined, { signal });
    return value;
  },
});
