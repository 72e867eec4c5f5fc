import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError, drawCount } from '../shared/config.js';
import type { JobRegistry } from '../shared/jobs/registry.js';
import type { Logger } from '../shared/logger.js';
import { RunError } from '../shared/run/run-store.js';
import type { ProducerConfig } from './config.js';
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
  const planned = drawCount(config.jobs, deps.random);
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
  let sent = 0;
  try {
    sent = await putPlanned(config, producer, planned, AbortSignal.any([signal, producer.signal]), deps);
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
  if (fenced()) return lost();
  const stoppedEarly = sent < planned;
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

/** Puts the planned jobs in batches, pausing and waiting for room as configured; how many it sent. */
async function putPlanned(
  config: ProducerConfig,
  producer: ProducerClient,
  planned: number,
  stopping: AbortSignal,
  deps: RunProducerDeps,
): Promise<number> {
  const payloadFor = makePayloadFactory(config);
  let sent = 0;
  while (sent < planned && !stopping.aborted) {
    if (config.intervalMs > 0)
      await sleep(config.intervalMs, undefined, { signal: stopping }).catch(() => undefined);
    if (stopping.aborted) break;
    if (config.maxDepth > 0) await waitForRoom(producer, config.maxDepth, stopping);
    if (stopping.aborted) break;
    const n = Math.min(config.batchSize, planned - sent);
    const items: PutItem[] = Array.from({ length: n }, (_, i) => ({
      type: config.jobType,
      payload: payloadFor(sent + i),
    }));
    const before = producer.enqueued;
    await producer.putMany(items);
    deps.observer?.jobsProduced?.(producer.enqueued - before);
    sent += n;
    deps.log.debug({ sent, planned }, 'put');
  }
  return sent;
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
  if (!registry.get(config.jobType))
    throw new ConfigError([
      `JOB_TYPE: unknown job type "${config.jobType}" (known: ${registry.names().join(', ')})`,
    ]);
  const variable =
    config.jobType === 'sleep' ? 'JOB_MS' : config.jobType === 'fetch' ? 'FETCH_URLS' : 'JOB_PAYLOAD';
  const v = registry.validate(config.jobType, makePayloadFactory(config)(0));
  if (!v.ok) throw new ConfigError([`${variable}: not a valid "${config.jobType}" payload: ${v.reason}`]);
  for (const cb of config.callbacks)
    if (!registry.get(cb.type))
      throw new ConfigError([
        `${cb.name === 'on-join' ? 'ON_JOIN_TYPE' : 'ON_SUCCESS_TYPE'}: unknown job type "${cb.type}" (known: ${registry.names().join(', ')})`,
      ]);
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
