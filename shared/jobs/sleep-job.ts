import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { defineJob } from './define.js';

/** The seed's `slow(n)`: waits, then returns its value. */
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
