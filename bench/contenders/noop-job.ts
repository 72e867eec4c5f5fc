import { z } from 'zod';

/**
 * A conveyor job type (loaded through JOB_MODULES) whose handler returns at once, like the other
 * contenders' no-op processors. The built-in `sleep` job with ms=0 still waits for a timer (≥1 ms),
 * which would cap conveyor's rate at low concurrency for a reason no other contender pays.
 */
export const noopJob = {
  name: 'noop',
  schema: z.strictObject({ value: z.number().int(), ms: z.number().int() }),
  handler: (payload: { value: number }) => Promise.resolve(payload.value),
};
