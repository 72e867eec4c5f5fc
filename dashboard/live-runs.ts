import type { Queue, QueueEvents } from 'bullmq';
import type { Response } from 'express';
import { queueShards, runKeys, shardRunKeys } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import type { JobData } from '../shared/queue.js';
import type { RedisClient } from '../shared/redis.js';
import { listRuns, readRunStatus, type RunStatus } from '../shared/run/status.js';
import { EventStream, sseMessage } from './event-stream.js';
import { readQueueDepth, type ShardDepth } from './queue-depth.js';
import { viewOf, type RunView } from './run-view.js';
import { FailedKinds } from '../shared/metrics/failed-kinds.js';

/**
 * Queue depth at one moment (queue-wide: every run on the queue shares these lists, summed over the
 * queue's shards). `shards`: each shard's waiting jobs, only when the queue has more than one.
 */
export type DepthSample = {
  t: number;
  waiting: number;
  active: number;
  delayed: number;
  /** BullMQ's failed jobs that failed on their own (cancelled ones are counted apart). */
  failed: number;
  /** BullMQ's failed jobs that conveyor cancelled (BullMQ keeps them in its failed set). */
  cancelled: number;
  shards?: number[];
};

/** What every client of a watched run receives on each update. */
export type LiveUpdate = {
  runId: string | null;
  runs: string[];
  /** The run's counts, its producers and consumers as counts and a first page of rows (RunView). */
  status: RunView | null;
  /** Jobs of the run someone cancelled (one by one or with the run): how many, and up to CANCELLED_SHOWN ids. */
  cancelledJobs: { total: number; ids: string[] };
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
  /** How long a run's watcher (its rate window) outlives its last client, so a reload keeps it; default 30 s. */
  lingerMs?: number;
  /** Runs watched at once (DASHBOARD_MAX_WATCHED_RUNS); a new one evicts a watcher nobody watches, or is refused. */
  maxWatchedRuns?: number;
  /** Event stream clients at once; more are refused. */
  maxClients?: number;
  /** Sample the queue's depth from the start, with nobody watching, so the first visitor sees its history. */
  watchDefault?: boolean;
};

const RATE_WINDOW_MS = 10_000;
const MAX_DRAINED = 20;
const WAITING_SHOWN = 20;
const CANCELLED_SHOWN = 20;
/** A run is read at most every pollMs, and never more often than this many times the last read took. */
const READ_DUTY_FACTOR = 10;

/**
 * The queue's depth over time, one for the whole queue: every run on it shares the same lists, so
 * switching the page to another run keeps the chart.
 */
class QueueHistory {
  readonly samples: DepthSample[] = [];
  /** Drained moments seen in the counts, used when no QueueEvents stream is available. */
  readonly inferredDrained: number[] = [];

  constructor(private readonly historyMs: number) {}

  add(depth: DepthSample, inferDrained: boolean): void {
    const prev = this.samples.at(-1);
    this.samples.push(depth);
    while (this.samples.length > 0 && this.samples[0]!.t < depth.t - this.historyMs) this.samples.shift();
    if (inferDrained && prev && prev.waiting > 0 && depth.waiting === 0) this.inferredDrained.push(depth.t);
    this.inferredDrained.splice(0, Math.max(0, this.inferredDrained.length - MAX_DRAINED));
  }
}

/** What one read of the queue (shared by every watched run) saw. */
type QueueSnapshot = {
  runs: string[];
  depth: DepthSample;
  shards: ShardDepth[];
  /** The first not-yet-started job ids of each shard, all runs (filtered per run). */
  notStarted: string[];
};

/** One watched run: read while anyone watches it, each reading encoded once and sent to all its clients. */
class RunWatcher {
  readonly clients = new Set<EventStream>();
  /** The newest update, encoded once for every client. */
  latest: Buffer | undefined;
  /** Set while a read is under way (reads of one run never overlap). */
  reading = false;
  /** When it may be read next (READ_DUTY_FACTOR). */
  nextReadAt = 0;
  /** Since when nobody watches it (it lingers, costing nothing, until evicted or its time is up). */
  idleSince: number | null = null;
  private last: LiveUpdate | undefined;
  /** The run's whole status as last read: later pages of its tables are served from it. */
  lastStatus: RunStatus | null = null;
  private readonly finished: { t: number; n: number }[] = [];
  private lastRun: string | null = null;
  private lingerTimer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    readonly key: string,
    private readonly opts: LiveRunsOptions,
    private readonly drainedLog: () => number[],
    private readonly onIdle: (key: string) => void,
  ) {}

  add(client: EventStream, history: QueueHistory): void {
    clearTimeout(this.lingerTimer);
    this.idleSince = null;
    this.clients.add(client);
    client.send(sseMessage('history', { samples: history.samples }));
    if (this.latest) client.send(this.latest);
  }

  remove(client: EventStream): void {
    this.clients.delete(client);
    if (this.clients.size === 0 && !this.stopped) {
      this.idleSince = Date.now();
      this.lingerTimer = setTimeout(() => this.onIdle(this.key), this.opts.lingerMs ?? 30_000);
      this.lingerTimer.unref();
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.lingerTimer);
    for (const client of this.clients) client.end();
    this.clients.clear();
  }

  /** Reads the run and sends the update to its clients; a failed read tells them Redis is not answering. */
  async refresh(snapshot: QueueSnapshot): Promise<void> {
    if (this.reading || this.stopped) return;
    this.reading = true;
    const started = Date.now();
    try {
      const update = await this.read(snapshot);
      if (this.stopped) return;
      this.last = update;
      this.latest = sseMessage('update', update);
      for (const client of this.clients) client.send(this.latest);
    } catch (err) {
      this.opts.log.debug({ err: err instanceof Error ? err.message : String(err) }, 'live poll failed');
      this.sendError();
    } finally {
      this.reading = false;
      this.nextReadAt = started + Math.max(this.opts.pollMs, (Date.now() - started) * READ_DUTY_FACTOR);
    }
  }

  sendError(): void {
    const error = sseMessage('update', { ...this.last, error: 'Redis is not answering; retrying' });
    for (const client of this.clients) client.send(error);
  }

  private async read(snapshot: QueueSnapshot): Promise<LiveUpdate> {
    const { redis, queue, leaseMs } = this.opts;
    const runId = this.key || this.opts.defaultRunId || snapshot.runs[0] || null;
    const [status, cancelledJobs] = runId
      ? await Promise.all([readRunStatus(redis, queue, runId, leaseMs), this.readCancelled(runId)])
      : [null, { total: 0, ids: [] }];
    this.lastStatus = status;
    // every job id of the run begins with `<run>+` (keys.ts)
    const waitingJobs = runId
      ? snapshot.notStarted.filter((id) => id.startsWith(`${runId}+`)).slice(0, WAITING_SHOWN)
      : [];
    const now = status?.observedAt ?? snapshot.depth.t;

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
    return {
      runId,
      runs: snapshot.runs,
      status: status && viewOf(status),
      cancelledJobs,
      depth: snapshot.depth,
      shards: snapshot.shards,
      rate,
      etaSeconds,
      drained: this.drainedLog(),
      waitingJobs,
      error: null,
    };
  }

  /** How many jobs of the run were cancelled, and the first few ids (one SCARD and one SSCAN per shard). */
  private async readCancelled(runId: string): Promise<LiveUpdate['cancelledJobs']> {
    const { redis, queue, queues } = this.opts;
    const sets = queueShards(queue, queues.length).map((s) => shardRunKeys(s, runId).cancelled);
    const [counts, scans] = await Promise.all([
      Promise.all(sets.map((k) => redis.scard(k))),
      Promise.all(sets.map((k) => redis.sscan(k, '0', 'COUNT', String(CANCELLED_SHOWN)))),
    ]);
    const ids = scans.flatMap(([, members]) => members).sort();
    return { total: counts.reduce((a, b) => a + b, 0), ids: ids.slice(0, CANCELLED_SHOWN) };
  }
}

/** Why a client was not given an event stream: the HTTP status and a sentence for the page. */
export type Refusal = { status: number; error: string };

/**
 * Live state for the page over Server-Sent Events. One loop reads the queue every `pollMs` (its depth
 * for the chart; with anyone watching, also its runs and not-yet-started jobs), and each run someone
 * watches is read once per loop however many clients watch it, never more often than
 * READ_DUTY_FACTOR times its last read took. Watchers exist only for runs that exist, at most
 * `maxWatchedRuns` at once, and one nobody watches costs no reads.
 */
export class LiveRuns {
  private readonly watchers = new Map<string, RunWatcher>();
  private readonly drained: number[] = [];
  private readonly history: QueueHistory;
  private readonly failedKinds: FailedKinds;
  private readonly heartbeat: NodeJS.Timeout;
  private timer: NodeJS.Timeout | undefined;
  private ticking = false;
  /** Set when a loop under way should be followed by another at once (a newly watched run). */
  private soon = false;
  private snapshot: QueueSnapshot | undefined;
  private closed = false;
  /** Updates skipped for clients that were behind, and clients dropped for not reading, so far. */
  readonly counts = { skipped: 0, dropped: 0 };
  private readonly onDrained = (id: string) => {
    // A stream id starts with the Redis time of the event in ms.
    const t = Number(id.split('-')[0]);
    this.drained.push(Number.isFinite(t) && t > 0 ? t : Date.now());
    if (this.drained.length > MAX_DRAINED) this.drained.shift();
  };

  constructor(private readonly opts: LiveRunsOptions) {
    this.history = new QueueHistory(opts.historyMs);
    this.failedKinds = new FailedKinds(opts.redis, opts.queues);
    opts.queueEvents?.on('drained', this.onDrained);
    // A comment line every so often keeps proxies and browsers from timing out a quiet stream.
    this.heartbeat = setInterval(() => {
      for (const w of this.watchers.values()) for (const client of w.clients) client.keepAlive();
    }, opts.heartbeatMs ?? 15_000);
    this.heartbeat.unref();
    if (opts.watchDefault) this.wake();
  }

  /** Runs watched now (each read every pollMs while anyone watches it). */
  get pollers(): number {
    return this.watchers.size;
  }

  /** Event stream clients connected now. */
  get clients(): number {
    let n = 0;
    for (const w of this.watchers.values()) n += w.clients.size;
    return n;
  }

  /**
   * Turns `res` into an event stream of `runId` ('' = the default/latest run) until the client leaves,
   * or refuses it (an unknown run, too many runs or clients at once) with a status and a JSON error.
   */
  async subscribe(runId: string, res: Response): Promise<void> {
    let gone = false;
    res.once('close', () => (gone = true));
    const refusal = await this.admit(runId);
    if (gone) return;
    if (refusal) {
      res.status(refusal.status).json({ error: refusal.error });
      return;
    }
    const w = this.watchers.get(runId) ?? this.addWatcher(runId);
    if (!w) {
      const max = this.opts.maxWatchedRuns ?? 20;
      res.status(503).json({
        error: `this dashboard already watches ${max} runs for open pages (DASHBOARD_MAX_WATCHED_RUNS); try again when one is closed`,
      });
      return;
    }
    const client = new EventStream(res, {
      stallMs: this.opts.stallMs ?? 30_000,
      latest: () => w.latest,
      onSkip: () => this.counts.skipped++,
      onDrop: () => this.counts.dropped++,
    });
    client.open();
    w.add(client, this.history);
    res.on('close', () => w.remove(client));
    // A run nobody watched yet: its first update at once rather than a poll later.
    this.wake(!w.latest);
  }

  private async admit(runId: string): Promise<Refusal | null> {
    if (this.closed) return { status: 503, error: 'the dashboard is shutting down' };
    const maxClients = this.opts.maxClients ?? 1_000;
    if (this.clients >= maxClients)
      return {
        status: 503,
        error: `this dashboard already serves ${maxClients} live pages; try again later`,
      };
    if (runId === '' || this.watchers.has(runId)) return null;
    // A run exists once created, or while consumers wait for it (status shows them); one EXISTS.
    const k = runKeys(this.opts.queue, runId);
    if ((await this.opts.redis.exists(k.meta, k.consumers)) > 0) return null;
    return { status: 404, error: `no run "${runId}" on queue "${this.opts.queue}"` };
  }

  /** A watcher for `runId`, evicting the one longest unwatched when at the cap; null when all are watched. */
  private addWatcher(runId: string): RunWatcher | null {
    if (this.watchers.size >= (this.opts.maxWatchedRuns ?? 20)) {
      let oldest: RunWatcher | undefined;
      for (const w of this.watchers.values())
        if (w.idleSince !== null && (!oldest || w.idleSince < oldest.idleSince!)) oldest = w;
      if (!oldest) return null;
      this.drop(oldest.key);
    }
    const w = new RunWatcher(
      runId,
      this.opts,
      () => this.drainedMoments(),
      (key) => this.drop(key),
    );
    this.watchers.set(runId, w);
    return w;
  }

  private drainedMoments(): number[] {
    return [...this.drained, ...this.history.inferredDrained].sort((a, b) => a - b).slice(-MAX_DRAINED);
  }

  /**
   * Starts the loop unless it runs (it runs while anyone watches, or always with watchDefault); `now`:
   * the next loop at once, not a poll later.
   */
  private wake(now = false): void {
    if (this.closed) return;
    if (this.ticking) {
      this.soon ||= now;
      return;
    }
    if (this.timer && !now) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.tick(), 0);
  }

  private async tick(): Promise<void> {
    this.timer = undefined;
    this.ticking = true;
    const watched = [...this.watchers.values()].filter((w) => w.clients.size > 0);
    try {
      const snapshot = await this.readQueue(watched.length > 0);
      if (this.closed) return;
      this.snapshot = snapshot;
      this.history.add(snapshot.depth, !this.opts.queueEvents);
      // Half a poll of slack, so a run due a moment after this loop is not put off a whole poll.
      const now = Date.now() + this.opts.pollMs / 2;
      // Not awaited: a big run's read never holds up the loop or another run's.
      for (const w of watched) if (now >= w.nextReadAt) void w.refresh(snapshot);
    } catch (err) {
      this.opts.log.debug({ err: err instanceof Error ? err.message : String(err) }, 'live poll failed');
      for (const w of watched) w.sendError();
    } finally {
      this.ticking = false;
    }
    if (!this.closed && (this.opts.watchDefault || this.clients > 0))
      this.timer = setTimeout(() => void this.tick(), this.soon ? 0 : this.opts.pollMs);
    this.soon = false;
  }

  /** The queue-wide reading: its depth always (the chart); runs and not-started jobs when anyone watches. */
  private async readQueue(watched: boolean): Promise<QueueSnapshot> {
    const { redis, queue, queues } = this.opts;
    const [time, runs, { total, shards }, notStarted] = await Promise.all([
      redis.time(),
      watched ? listRuns(redis, queue) : Promise.resolve(this.snapshot?.runs ?? []),
      readQueueDepth(queues),
      watched
        ? Promise.all(
            queues.map((q) => q.getRanges(['waiting', 'prioritized', 'delayed'], 0, WAITING_SHOWN * 5)),
          )
        : Promise.resolve([]),
    ]);
    await this.failedKinds.update(shards.map((s) => s.failed));
    const { cancelled } = this.failedKinds.total;
    const depth: DepthSample = {
      // Redis's clock, as the run's own times (the chart marks the join on it).
      t: Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000),
      waiting: total.waiting,
      active: total.active,
      delayed: total.delayed,
      failed: total.failed - cancelled,
      cancelled,
      ...(shards.length > 1 ? { shards: shards.map((s) => s.waiting) } : {}),
    };
    return { runs, depth, shards, notStarted: notStarted.flat() };
  }

  private drop(key: string): void {
    const w = this.watchers.get(key);
    if (w && w.clients.size === 0) {
      w.stop();
      this.watchers.delete(key);
    }
  }

  /**
   * The whole status of `runId` as its watcher last read it, while anyone watches it (so pages of its
   * tables cost Redis nothing); undefined otherwise.
   */
  watchedStatus(runId: string): RunStatus | undefined {
    for (const w of this.watchers.values())
      if (w.clients.size > 0 && w.lastStatus?.runId === runId) return w.lastStatus;
    return undefined;
  }

  /** Stops the loop and ends every stream (so an HTTP server can close). Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeat);
    clearTimeout(this.timer);
    this.opts.queueEvents?.off('drained', this.onDrained);
    for (const w of this.watchers.values()) w.stop();
    this.watchers.clear();
  }
}
