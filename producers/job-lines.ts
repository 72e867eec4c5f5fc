import { createHash } from 'node:crypto';
import { nameSchema } from '../shared/config.js';
import type { JobRegistry } from '../shared/jobs/registry.js';
import type { PutItem } from './producer.js';

/** A line of a jobs file that is not a job; `line` counts from 1, as editors do. */
export class JobLineError extends Error {
  constructor(
    readonly source: string,
    readonly line: number,
    readonly reason: string,
  ) {
    super(`${source}, line ${line}: ${reason}`);
    this.name = 'JobLineError';
  }
}

/** The longest line read: a payload is at most 64 KiB of JSON, so a longer line is a mistake, not a job. */
export const MAX_LINE_BYTES = 1024 * 1024;

/**
 * The lines of a byte stream with their numbers, pulled one chunk at a time: nothing is read ahead
 * of what the caller has taken, so a file of any length is read in the memory of one chunk and one
 * line. A trailing '\r' is dropped (files written on Windows).
 */
export async function* readLines(
  input: AsyncIterable<Buffer | string> | Iterable<Buffer | string>,
  source: string,
): AsyncGenerator<{ line: number; text: string }> {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let line = 0;
  const take = (tail: Buffer) => {
    const text = Buffer.concat([...pending, tail]).toString('utf8');
    pending = [];
    pendingBytes = 0;
    line++;
    return { line, text: text.endsWith('\r') ? text.slice(0, -1) : text };
  };
  for await (const chunk of input) {
    let buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    for (let nl = buf.indexOf(10); nl !== -1; nl = buf.indexOf(10)) {
      yield take(buf.subarray(0, nl));
      buf = buf.subarray(nl + 1);
    }
    if (buf.length > 0) {
      pendingBytes += buf.length;
      if (pendingBytes > MAX_LINE_BYTES)
        throw new JobLineError(source, line + 1, `longer than ${MAX_LINE_BYTES} bytes: is this a jobs file?`);
      pending.push(buf);
    }
  }
  if (pendingBytes > 0) yield take(Buffer.alloc(0));
}

const FIELDS = new Set(['type', 'payload', 'key', 'timeoutMs', 'delay', 'priority']);

/**
 * One line as a put: `{"type": ..., "payload": ..., "key"?, "timeoutMs"?}`, checked as a put checks
 * it (the type's schema, the payload limits). Its idempotency key is the line's `key`, else
 * `l<line>.<hash of the producer id and the line>`: the same producer running the same file again in
 * the same run puts only the lines the run has not accepted yet, an edited line is a new job, and
 * two producers whose files share a line each put it. Throws JobLineError saying what is wrong.
 */
export function parseJobLine(
  text: string,
  line: number,
  source: string,
  registry: JobRegistry,
  producerId: string,
): PutItem {
  const fail = (reason: string): never => {
    throw new JobLineError(source, line, reason);
  };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    fail(`not JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    fail('must be a JSON object like {"type": "sleep", "payload": {"value": 1, "ms": 10}}');
  const job = value as Record<string, unknown>;
  const unknown = Object.keys(job).filter((f) => !FIELDS.has(f));
  if (unknown.length > 0)
    fail(`unknown field ${unknown.join(', ')} (a line has type, payload, and optionally key and timeoutMs)`);
  for (const field of ['delay', 'priority'])
    if (field in job)
      fail(
        `${field} is not supported: conveyor's put stores a job and counts it in its run in one step, for waiting jobs only (put the line without ${field})`,
      );
  if (typeof job.type !== 'string') fail('"type" must be a job type name');
  const type = job.type as string;
  if (!('payload' in job)) fail('"payload" is missing (use {} for a type that takes none)');
  const v = registry.validate(type, job.payload);
  if (!v.ok) fail(v.reason);
  if (job.key !== undefined && (typeof job.key !== 'string' || !nameSchema.safeParse(job.key).success))
    fail('"key" must be 1-64 letters, digits, "_", "." or "-"');
  if (
    job.timeoutMs !== undefined &&
    !(typeof job.timeoutMs === 'number' && Number.isInteger(job.timeoutMs) && job.timeoutMs > 0)
  )
    fail('"timeoutMs" must be a positive whole number of milliseconds');
  const key = (job.key as string | undefined) ?? defaultKey(producerId, line, text);
  return {
    type,
    payload: v.ok ? v.payload : undefined,
    key,
    ...(job.timeoutMs !== undefined ? { timeoutMs: job.timeoutMs as number } : {}),
  };
}

function defaultKey(producerId: string, line: number, text: string): string {
  return `l${line}.${createHash('sha256').update(producerId).update('\n').update(text).digest('hex').slice(0, 16)}`;
}

/**
 * The jobs of a stream of lines, in batches of up to `batchSize`, each pulled only once the caller
 * asks for it (a put in progress holds the reading back). Blank lines are skipped; a bad line ends
 * the batches with a JobLineError.
 */
export async function* jobBatches(
  input: AsyncIterable<Buffer | string> | Iterable<Buffer | string>,
  source: string,
  registry: JobRegistry,
  batchSize: number,
  producerId: string,
): AsyncGenerator<PutItem[]> {
  let batch: PutItem[] = [];
  for await (const { line, text } of readLines(input, source)) {
    if (text.trim() === '') continue;
    batch.push(parseJobLine(text, line, source, registry, producerId));
    if (batch.length >= batchSize) {
      yield batch;
      batch = [];
    }
  }
  if (batch.length > 0) yield batch;
}
