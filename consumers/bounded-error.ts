import type { Job } from 'bullmq';

/** BullMQ keeps a failed attempt's message (`failedReason`) and stack on the job, and Bull Board lists them. */
export const MESSAGE_MAX = 2 * 1024;
export const STACK_MAX = 8 * 1024;
/** The job's log takes the whole text up to this; beyond, its head and how much was left out. */
export const LOG_MAX = 256 * 1024;

/**
 * Cuts an error's message and stack to MESSAGE_MAX and STACK_MAX characters, in place (its class
 * and name stay: BullMQ and the cancel/timeout checks read them). Returns the text for the job's log
 * when anything was cut (the full stack, itself cut at LOG_MAX), else null.
 */
export function boundError(err: unknown): string | null {
  if (!(err instanceof Error)) return null;
  const message = err.message;
  const stack = err.stack ?? '';
  if (message.length <= MESSAGE_MAX && stack.length <= STACK_MAX) return null;
  // V8 writes the stack as "<name>: <message>" followed by the frames.
  const header = message ? `${err.name}: ${message}` : err.name;
  const whole = stack.startsWith(header) ? stack : `${header}\n${stack}`;
  const frames = stack.startsWith(header) ? stack.slice(header.length) : `\n${stack}`;
  if (message.length > MESSAGE_MAX) {
    const note = `… (${message.length} characters; more in the job's log)`;
    err.message = message.slice(0, MESSAGE_MAX - note.length) + note;
  }
  const head = err.message ? `${err.name}: ${err.message}` : err.name;
  err.stack = (head + frames).slice(0, STACK_MAX);
  return whole.length <= LOG_MAX
    ? whole
    : `${whole.slice(0, LOG_MAX)}\n… ${whole.length - LOG_MAX} characters not kept`;
}

/**
 * The processor with every error it throws bounded (boundError) before BullMQ stores it, the whole
 * text written to the job's log first.
 */
export function withBoundedErrors<T>(processor: (job: Job<T>) => Promise<unknown>) {
  return async (job: Job<T>): Promise<unknown> => {
    try {
      return await processor(job);
    } catch (err) {
      const whole = boundError(err);
      // A log that cannot be written must not change how the job fails.
      if (whole !== null) await job.log(whole).catch(() => undefined);
      throw err;
    }
  };
}
