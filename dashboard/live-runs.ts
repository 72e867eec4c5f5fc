import type { Queue, QueueEvents } from 'bullmq';
import type { Response } from 'express';
import type { RedisClient } from '../shared/redis.js';
import type { Logger } from '../shared/logger.js';
import type { JobData } from '../shared/queue.js';
import { listRuns, readRunStatus, type RunStatus } from '../shared/run/status.js';
import { EventStream, sseMessage } from './event-stream.js';
import { readQueueDepth, type ShardDepth } from './queue-depth.js';

/**
 * Queue depth at one moment (queue-wide: every run on the queue shares these lists, summed over the
 * queue's shards). `shards`: each shard's waiting jobs, only when the queue has more than one.
 */
export type DepthSample = {
  t: number;
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
  shards?: number[];
};

/** What every client of a watched run receives on each tick. */
export type LiveUpdate = {
  runId: string | null;
  runs: string[];
  status: RunStatus | null;
  depth: DepthSample;
  /** Each shard's BullMQ counts, in shard order (one entry when the queue is not sharded). */
  shards: ShardDepth[];
  /** Finished jobs per second over the last RATE_WINDOW_MS. */
  rate: number | null;
  /** Seconds until the jobs produced so far are finished, at `rate`. */
  etaSeconds: number | null;
  /** When the queue's wait list became empty (BullMQ "drained"), newest last. */
  drained: number[];
  /** Up to WAITING_SHOWN jobs of the run not yet started (waiting, prioritized, delayed), each a cancel target. */
  waitingJobs: string[];
  error: string | null;
};

export type LiveRunsOptions = {
  redis: RedisClient;
  /** The conveyor queue's name (its runs are listed under it). */
  queue: string;
  /** One BullMQ queue per shard of `queue`, in shard order. */
  queues: readonly Queue<JobData>[];
  /**
   * Source of BullMQ's "drained" events; without it drained moments are inferred from the counts (a
   * sharded queue has no single event stream: it drains when the sum over its shards reaches 0).
   */
  queueEvents?: QueueEvents;
  log: Logger;
  leaseMs: number;
  pollMs: number;
  historyMs: number;
  /** The run shown when a client names none; else the queue's latest. */
  defaultRunId?: string;
  heartbeatMs?: number;
  /** How long a client may stay behind (not reading) before it is dropped; default 30 s. */
  stallMs?: number;
  /** How long a run's poller (and its chart history) outlives its last client, so a reload keeps the chart. */
  lingerMs?: number;
  /** Poll the default run from the start, even with nobody watching, so the first visitor sees its history. */
  watchDefault?: boolean;
};

const RATE_WINDOW_MS = 10_000;
const MAX_DRAINED = 20;

/**
 * The queue's depth over time, one for the whole queue: every run on it shares the same lists, so
 * switching the page to another run keeps the chart. Fed by whichever run pollers are running.
 */
class QueueHistory {
  readonly samples: DepthSample[] = [];
  /** Drained moments seen in the counts, used when no QueueEvents stream is available. */
  readonly inferredDrained: number[] = [];

  constructor(
    private readonly historyMs: number,
    private readonly minGapMs: number,
  ) {}

  /** Adds a reading unless another poller added one moments ago. */
  add(depth: DepthSample, inferDrained: boolean): void {
    const prev = this.samples.at(-1);
    if (prev && depth.t - prev.t < this.minGapMs) return;
    this.samples.push(depth);
    while (this.samples.length > 0 && this.samples[0]!.t < depth.t - this.historyMs) this.samples.shift();
    if (inferDrained && prev && prev.waiting > 0 && depth.waiting === 0) this.inferredDrained.push(depth.t);
    this.inferredDrained.splice(0, Math.max(0, this.inferredDrained.length - MAX_DRAINED));
  }
}

/** One poller for one watched run, fanning each reading out to every client watching it. */
class RunWatcher {
  readonly clients = new Set<EventStream>();
  /** The newest update, encoded once for every client. */
  latest: Buffer | undefined;
  private readonly finished: { t: number; n: number }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private last: LiveUpdate | undefined;
  private lastRun: string | null = null;

  constructor(
    private readonly key: string,
    private readonly opts: LiveRunsOptions,
    private readonly drainedLog: () => number[],
    private readonly onIdle: (key: string) => void,
    private readonly history: QueueHistory,
  ) {
    void this.tick();
  }

  add(client: EventStream): void {
    clearTimeout(this.lingerTimer);
    this.lingerTimer = undefined;
    this.clients.add(client);
    client.send(sseMessage('history', { samples: this.history.samples }));
    if (this.latest) client.send(this.latest);
  }

  remove(client: EventStream): void {
    this.clients.delete(client);
    if (this.clients.size === 0 && !this.stopped) {
      this.lingerTimer = setTimeout(() => this.onIdle(this.key), this.opts.lingerMs ?? 30_000);
      this.lingerTimer.unref();
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.lingerTimer);
    for (const client of this.clients) client.end();
    this.clients.clear();
  }

  private async tick(): Promise<void> {
    try {
      const update = await this.read();
      if (this.stopped) return;
      this.last = update;
      this.latest = sseMessage('update', update);
      for (const client of this.clients) client.send(this.latest);
    } catch (err) {
      this.opts.log.debug({ err: err instanceof Error ? err.message : String(err) }, 'live poll failed');
      if (this.stopped) return;
      const error = sseMessage('update', { ...this.last, error: 'Redis is not answering; retrying' });
      for (const client of this.clients) client.send(error);
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.tick(), this.opts.pollMs);
  }

  private async read(): Promise<LiveUpdate> {
    const { redis, queue, queues, leaseMs } = this.opts;
    const runs = await listRuns(redis, queue);
    const runId = this.key || this.opts.defaultRunId || runs[0] || null;
    const [status, { total, shards }, waitingJobs] = await Promise.all([
      runId ? readRunStatus(redis, queue, runId, leaseMs) : Promise.resolve(null),
      readQueueDepth(queues),
      runId ? readWaitingJobs(queues, runId) : Promise.resolve([]),
    ]);
    const now = status?.observedAt ?? Date.now();
    const depth: DepthSample = {
      t: now,
      waiting: total.waiting,
      active: total.active,
      delayed: total.delayed,
      failed: total.failed,
      ...(shards.length > 1 ? { shards: shards.map((s) => s.waiting) } : {}),
    };
    this.history.add(depth, !this.opts.queueEvents);

    if (runId !== this.lastRun) this.finished.length = 0;
    this.lastRun = runId;
    let rate: number | null = null;
    let etaSeconds: number | null = null;
    if (status) {
      this.finished.push({ t: now, n: status.jobs.completed + status.jobs.failed });
      while (this.finished.length > 1 && this.finished[0]!.t < now - RATE_WINDOW_MS) this.finished.shift();
      const first = this.finished[0]!;
      const span = (now - first.t) / 1000;
      if (span >= 1) rate = (status.jobs.completed + status.jobs.failed - first.n) / span;
      if (status.join.state === 'joined') etaSeconds = 0;
      else if (rate !== null && rate > 0) etaSeconds = status.jobs.unfinished / rate;
    }
    const drained = [...this.drainedLog(), ...this.history.inferredDrained]
      .sort((a, b) => a - b)
      .slice(-MAX_DRAINED);
    return { runId, runs, status, depth, shards, rate, etaSeconds, drained, waitingJobs, error: null };
  }
}

const WAITING_SHOWN = 20;

/** The first few not-yet-started jobs of a run, over every shard (ids only: one range read per shard). */
async function readWaitingJobs(queues: readonly Queue<JobData>[], runId: string): Promise<string[]> {
  const ids = await Promise.all(
    queues.map((q) => q.getRanges(['waiting', 'prioritized', 'delayed'], 0, WAITING_SHOWN * 5)),
  );
  return (
    ids
      .flat()
      // every job id of the run begins with `<run>+` (keys.ts)
      .filter((id) => id.startsWith(`${runId}+`))
      .slice(0, WAITING_SHOWN)
  );
}

/**
 * Live state for the page over Server-Sent Events: one poller per watched run (not per client),
 * reading the run's status and the counts of every shard of the queue every `pollMs` and pushing them
 * to that run's clients.
 */
export class LiveRuns {
  private readonly watchers = new Map<string, RunWatcher>();
  private readonly drained: number[] = [];
  private readonly history: QueueHistory;
  private readonly heartbeat: NodeJS.Timeout;
  private closed = false;
  private readonly onDrained = (id: string) => {
    // A stream id starts with the Redis time of the event in ms.
    const t = Number(id.split('-')[0]);
    this.drained.push(Number.isFinite(t) && t > 0 ? t : Date.now());
    if (this.drained.length > MAX_DRAINED) this.drained.shift();
  };

  constructor(private readonly opts: LiveRunsOptions) {
    this.history = new QueueHistory(opts.historyMs, opts.pollMs / 2);
    opts.queueEvents?.on('drained', this.onDrained);
    // A comment line every so often keeps proxies and browsers from timing out a quiet stream.
    this.heartbeat = setInterval(() => {
      for (const w of this.watchers.values()) for (const client of w.clients) client.keepAlive();
    }, opts.heartbeatMs ?? 15_000);
    this.heartbeat.unref();
    if (opts.watchDefault)
      this.watchers.set(
        '',
        new RunWatcher(
          '',
          opts,
          () => this.drained,
          () => undefined,
          this.history,
        ),
      );
  }

  /** Number of pollers running (one per watched run). */
  get pollers(): number {
    return this.watchers.size;
  }

  /** Updates skipped for clients that were behind, and clients dropped for not reading, so far. */
  readonly counts = { skipped: 0, dropped: 0 };

  /** Event stream clients connected now. */
  get clients(): number {
    let n = 0;
    for (const w of this.watchers.values()) n += w.clients.size;
    return n;
  }

  /** Turns `res` into an event stream of `runId` ('' = the default/latest run) until the client leaves. */
  subscribe(runId: string, res: Response): void {
    if (this.closed) {
      res.status(503).end();
      return;
    }
    let watcher = this.watchers.get(runId);
    if (!watcher) {
      watcher = new RunWatcher(
        runId,
        this.opts,
        () => this.drained,
        (key) => this.drop(key),
        this.history,
      );
      this.watchers.set(runId, watcher);
    }
    const w = watcher;
    const client = new EventStream(res, {
      stallMs: this.opts.stallMs ?? 30_000,
      latest: () => w.latest,
      onSkip: () => this.counts.skipped++,
      onDrop: () => this.counts.dropped++,
    });
    client.open();
    w.add(client);
    res.on('close', () => w.remove(client));
  }

  private drop(key: string): void {
    const w = this.watchers.get(key);
    if (w && w.clients.size === 0) {
      w.stop();
      this.watchers.delete(key);
    }
  }

  /** Stops every poller and ends every stream (so an HTTP server can close). Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    this.opts.queueEvents?.off('drained', this.onDrained);
    for (const w of this.watchers.values()) w.stop();
    this.watchers.clear();
  }
}
