import { setTimeout as sleep } from 'node:timers/promises';
import type { Queue } from 'bullmq';
import { ConfigError, drawCount } from '../shared/config.js';
import type { JobRegistry } from '../shared/jobs/registry.js';
import type { Logger } from '../shared/logger.js';
import { jobOptions, keepOf, type JobData } from '../shared/queue.js';
import { deliverCallbacks } from '../shared/run/callbacks.js';
import { RunError, type RunStore } from '../shared/run/run-store.js';
import type { ProducerConfig } from './config.js';
import { createProducer, type PutItem } from './producer.js';
import { ProducerLease } from './producer-lease.js';

export type ProducerOutcome = {
  produced: number;
  planned: number;
  stoppedEarly: boolean;
  lost: boolean;
  /** The run was cancelled: the producer stopped putting and reported done with what it had put. */
  cancelled: boolean;
};

export type RunProducerDeps = {
  /** One BullMQ queue per shard, in shard order. */
  queues: readonly Queue<JobData>[];
  run: RunStore;
  registry: JobRegistry;
  log: Logger;
  host: string;
  pid: number;
  random?: () => number;
  observer?: ProducerObserver;
};

/** Optional listener for what a producer does (metrics hang off this). */
export type ProducerObserver = {
  /** `count` more jobs were enqueued and acknowledged in the run. */
  jobsProduced?(count: number): void;
};

/**
 * The seed's `produce(q)`: registers in the run, enqueues a random number of jobs with a pause before
 * each, waits while the run has `maxDepth` unfinished jobs, then reports done (which may join the run).
 * `signal` stops production early; the producer still reports done with what it had enqueued. So
 * does a cancel of the run (seen on the heartbeat): the outcome then says `cancelled`.
 */
export async function runProducer(
  config: ProducerConfig,
  deps: RunProducerDeps,
  signal: AbortSignal,
): Promise<ProducerOutcome> {
  const { run, log } = deps;
  const planned = drawCount(config.jobs, deps.random);
  await run.create(
    config.expectedProducers,
    config.leaseMs,
    config.retentionMs,
    config.callbacks,
    '',
    config.collectResults,
    keepOf(config.retry),
  );
  const registered = await run
    .registerProducer(config.producerId, { host: deps.host, pid: deps.pid }, config.leaseMs)
    .catch((err: unknown) => {
      if (err instanceof RunError && err.code === 'cancelled') return null;
      throw err;
    });
  if (!registered) {
    log.info({ state: 'cancelled' }, 'the run was cancelled before this producer registered: nothing to put');
    return { produced: 0, planned, stoppedEarly: true, lost: false, cancelled: true };
  }
  const { incarnation, instance, idPrefix } = registered;
  log.info(
    {
      planned,
      expectedProducers: config.expectedProducers,
      idPrefix,
      ...(incarnation > 1 ? { incarnation } : {}),
    },
    incarnation > 1
      ? 'producer registered again: its earlier incarnation is settled and fenced'
      : 'producer registered',
  );

  let lost = false;
  const markLost = (why: string) => {
    if (lost) return;
    lost = true;
    log.error(why);
  };
  // The lease runs until done() has been answered: a slow final flush must not cost it.
  const lease = new ProducerLease({
    run,
    producerId: config.producerId,
    incarnation,
    leaseMs: config.leaseMs,
    heartbeatMs: config.heartbeatMs,
    log,
  });
  // A cancel of the run stops production like a signal does, but the outcome says so; a fence or a
  // vanished run stops it as lost.
  lease.signal.addEventListener(
    'abort',
    () => {
      if (lease.state === 'cancelled') log.info('the run was cancelled: stopping production');
      else markLost((lease.signal.reason as Error).message);
    },
    { once: true },
  );
  const stopping = AbortSignal.any([signal, lease.signal]);

  const producer = createProducer({
    run,
    registry: deps.registry,
    producerId: config.producerId,
    instance,
    idPrefix,
    jobOptions: jobOptions(config.retry),
    batching: { lingerMs: config.putLingerMs },
  });
  const payloadFor = makePayloadFactory(config);
  let sent = 0;
  try {
    while (sent < planned && !stopping.aborted && !lost) {
      if (config.intervalMs > 0)
        await sleep(config.intervalMs, undefined, { signal: stopping }).catch(() => undefined);
      if (stopping.aborted || lost) break;
      if (config.maxDepth > 0) await waitForRoom(run, config.maxDepth, stopping);
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
      log.debug({ sent, planned }, 'put');
    }
    const isCancelled = () => lease.state === 'cancelled';
    if (lost) return { produced: producer.produced, planned, stoppedEarly: true, lost, cancelled: false };
    const { state, join } = await producer.done({ stoppedEarly: sent < planned });
    if (state !== 'done') {
      markLost(`the run marked this producer ${state} before it reported done: its count stands as settled`);
      return { produced: producer.produced, planned, stoppedEarly: true, lost, cancelled: false };
    }
    const stoppedEarly = sent < planned;
    log.info(
      { produced: producer.produced, planned, stoppedEarly, state: isCancelled() ? 'cancelled' : 'done' },
      isCancelled() ? 'producer done: the run was cancelled' : 'producer done',
    );
    if (join.joinedNow) log.info({ runId: run.runId }, 'run joined');
    if (join.joined) await deliverCallbacks(run, deps.queues);
    return { produced: producer.produced, planned, stoppedEarly, lost, cancelled: isCancelled() };
  } catch (err) {
    if (err instanceof RunError && err.code === 'fenced') {
      markLost(err.message);
      return { produced: producer.produced, planned, stoppedEarly: true, lost, cancelled: false };
    }
    throw err;
  } finally {
    await lease.stop();
  }
}

/** asyncio.Queue(maxsize) semantics across processes: wait while the run has too many unfinished jobs. */
async function waitForRoom(run: RunStore, maxDepth: number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted && (await run.unfinished()) >= maxDepth) {
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
