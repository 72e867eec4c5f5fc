import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, drawCount } from '../shared/config.js';
import type { JobRegistry } from '../shared/jobs/registry.js';
import type { Logger } from '../shared/logger.js';
import { RunError } from '../shared/run/run-store.js';
import type { ProducerConfig } from './config.js';
import { jobBatches } from './job-lines.js';
import type { ProducerClient } from './open.js';
import type { PutItem } from './producer.js';

export type ProducerOutcome = {
  produced: number;
  planned: number;
  stoppedEarly: boolean;
  lost: boolean;
  /** The run was cancelled: the producer stopped putting and reported done with what it had put. */
  cancelled: boolean;
};

export type RunProducerDeps = {
  /** Opens the producer in its run (producers/open.ts): what the library's openProducer does. */
  open: () => Promise<ProducerClient>;
  log: Logger;
  random?: () => number;
  observer?: ProducerObserver;
  /** JOBS_FILE's bytes (a file, or standard input), when the jobs come from there. */
  jobsInput?: AsyncIterable<Buffer | string>;
  /** The job types a jobs file's lines are checked against. */
  registry?: JobRegistry;
};

/** Optional listener for what a producer does (metrics hang off this). */
export type ProducerObserver = {
  /** `count` more jobs were enqueued and acknowledged in the run. */
  jobsProduced?(count: number): void;
};

/**
 * The producer command's work, on the library's producer: enqueues a random number of jobs with a
 * pause before each, waits while the run has `maxDepth` unfinished jobs, then reports done (which may
 * join the run). `signal` stops production early; the producer still reports done with what it had
 * enqueued. So does a cancel of the run (the producer's own signal): the outcome then says
 * `cancelled`. A fence ends it lost, reporting nothing.
 */
export async function runProducer(
  config: ProducerConfig,
  deps: RunProducerDeps,
  signal: AbortSignal,
): Promise<ProducerOutcome> {
  const { log } = deps;
  // A file's jobs are counted as they are read (planned: how many were read).
  let planned = config.jobsFile !== null ? 0 : drawCount(config.jobs, deps.random);
  const producer = await deps.open().catch((err: unknown) => {
    if (err instanceof RunError && err.code === 'cancelled') return null;
    throw err;
  });
  if (!producer) {
    log.info({ state: 'cancelled' }, 'the run was cancelled before this producer registered: nothing to put');
    return { produced: 0, planned, stoppedEarly: true, lost: false, cancelled: true };
  }
  log.info({ planned }, 'producing');
  // Read when the signal fires: once done() answered, the handle's state says `done`.
  let runCancelled = false;
  const cancelled = () => runCancelled;
  const fenced = () => producer.state === 'fenced' || producer.state === 'gone';
  producer.signal.addEventListener(
    'abort',
    () => {
      runCancelled = producer.state === 'cancelled';
      if (runCancelled) log.info('the run was cancelled: stopping production');
      else log.error((producer.signal.reason as Error).message);
    },
    { once: true },
  );
  const lost = async (why?: string) => {
    if (why) log.error(why);
    await producer.close();
    return { produced: producer.produced, planned, stoppedEarly: true, lost: true, cancelled: false };
  };
  const progress = { sent: 0, exhausted: false };
  try {
    await putBatches(config, producer, planned, AbortSignal.any([signal, producer.signal]), deps, progress);
  } catch (err) {
    if (
      err instanceof RunError &&
      (err.code === 'fenced' || err.code === 'cancelled' || err.code === 'gone')
    ) {
      // Refused by the run (the producer's signal already said why) or fenced between heartbeats.
      if (err.code === 'fenced' && !fenced()) log.error(err.message);
    } else {
      await producer.close();
      throw err;
    }
  }
  if (config.jobsFile !== null) planned = progress.sent;
  if (fenced()) return lost();
  const stoppedEarly = !progress.exhausted;
  const { state, join } = await producer.done({ stoppedEarly });
  if (state !== 'done')
    return lost(`the run marked this producer ${state} before it reported done: its count stands as settled`);
  log.info(
    { produced: producer.produced, planned, stoppedEarly, state: cancelled() ? 'cancelled' : 'done' },
    cancelled() ? 'producer done: the run was cancelled' : 'producer done',
  );
  if (join.joinedNow) log.info({ runId: producer.runId }, 'run joined');
  return { produced: producer.produced, planned, stoppedEarly, lost: false, cancelled: cancelled() };
}

/**
 * Puts the jobs in batches (JOBS of JOB_TYPE, or a jobs file's lines), pausing and waiting for room
 * as configured; `progress` says how many it sent and whether it put them all.
 */
async function putBatches(
  config: ProducerConfig,
  producer: ProducerClient,
  planned: number,
  stopping: AbortSignal,
  deps: RunProducerDeps,
  progress: { sent: number; exhausted: boolean },
): Promise<void> {
  const fromFile = config.jobsFile !== null;
  const batches =
    fromFile && deps.jobsInput && deps.registry
      ? jobBatches(
          deps.jobsInput,
          sourceName(config.jobsFile!),
          deps.registry,
          config.batchSize,
          config.producerId,
        )
      : countedBatches(config, planned);
  while (!stopping.aborted) {
    // Counted jobs end without one more pause; a file's end is known only once read.
    if (!fromFile && progress.sent >= planned) {
      progress.exhausted = true;
      break;
    }
    if (config.intervalMs > 0)
      await sleep(config.intervalMs, undefined, { signal: stopping }).catch(() => undefined);
    if (stopping.aborted) break;
    if (config.maxDepth > 0) await waitForRoom(producer, config.maxDepth, stopping);
    if (stopping.aborted) break;
    // The next batch is read only now: a slow run holds a file's reading back (backpressure). A
    // signal ends a wait for input that may never come (standard input from a terminal).
    const next = await nextUnlessAborted(batches, stopping);
    if (next === null) break;
    if (next.done) {
      progress.exhausted = true;
      break;
    }
    const before = producer.enqueued;
    await producer.putMany(next.value);
    deps.observer?.jobsProduced?.(producer.enqueued - before);
    progress.sent += next.value.length;
    deps.log.debug({ sent: progress.sent, planned: fromFile ? progress.sent : planned }, 'put');
  }
}

/** asyncio.Queue(maxsize) semantics across processes: wait while the run has too many unfinished jobs. */
async function waitForRoom(producer: ProducerClient, maxDepth: number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted && (await producer.unfinished()) >= maxDepth) {
    await sleep(20, undefined, { signal }).catch(() => undefined);
  }
}

/**
 * Refuses, before anything is written to Redis, a job type the registry does not know or settings
 * whose payload its schema rejects, naming the variable to fix.
 */
export function checkProducible(config: ProducerConfig, registry: JobRegistry): void {
  checkCallbacks(config, registry);
  // A jobs file's lines are checked one by one as they are read.
  if (config.jobsFile !== null) return;
  if (!registry.get(config.jobType))
    throw new ConfigError([
      `JOB_TYPE: unknown job type "${config.jobType}" (known: ${registry.names().join(', ')})`,
    ]);
  const variable =
    config.jobType === 'sleep' ? 'JOB_MS' : config.jobType === 'fetch' ? 'FETCH_URLS' : 'JOB_PAYLOAD';
  const v = registry.validate(config.jobType, makePayloadFactory(config)(0));
  if (!v.ok) throw new ConfigError([`${variable}: not a valid "${config.jobType}" payload: ${v.reason}`]);
}

function checkCallbacks(config: ProducerConfig, registry: JobRegistry): void {
  for (const cb of config.callbacks)
    if (!registry.get(cb.type))
      throw new ConfigError([
        `${cb.name === 'on-join' ? 'ON_JOIN_TYPE' : 'ON_SUCCESS_TYPE'}: unknown job type "${cb.type}" (known: ${registry.names().join(', ')})`,
      ]);
}

/**
 * The iterator's next value, or null once the signal aborts first. Its listener goes with each call:
 * a race against one promise that stays pending would keep every value it was raced with.
 */
function nextUnlessAborted<T>(
  it: AsyncIterator<T> | Iterator<T>,
  signal: AbortSignal,
): Promise<IteratorResult<T> | null> {
  if (signal.aborted) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const onAbort = () => resolve(null);
    signal.addEventListener('abort', onAbort, { once: true });
    Promise.resolve(it.next())
      .then(resolve, reject)
      .finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** JOBS of JOB_TYPE in batches of BATCH_SIZE (the seed's producer). */
function* countedBatches(config: ProducerConfig, planned: number): Generator<PutItem[]> {
  const payloadFor = makePayloadFactory(config);
  for (let sent = 0; sent < planned; sent += config.batchSize) {
    const n = Math.min(config.batchSize, planned - sent);
    yield Array.from({ length: n }, (_, i) => ({ type: config.jobType, payload: payloadFor(sent + i) }));
  }
}

/** How a jobs file is named in errors. */
export function sourceName(jobsFile: string): string {
  return jobsFile === '-' ? 'standard input' : jobsFile;
}

function makePayloadFactory(config: ProducerConfig): (i: number) => unknown {
  switch (config.jobType) {
    case 'sleep':
      return (i) => ({ value: i, ms: config.jobMs });
    case 'fetch':
      return (i) => ({ url: config.fetchUrls[i % config.fetchUrls.length] });
    default:
      return () => config.jobPayload ?? {};
  }
}
