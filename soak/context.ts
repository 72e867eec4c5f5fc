import type { Queue } from 'bullmq';
import type { ChaosProcess } from '../chaos/processes.js';
import { openQueues, type JobData } from '../shared/queue.js';
import { cliResolved, HandlerLedger, PutLedger } from './ledger.js';
import type { FaultKind } from './menu.js';
import type { SoakOptions } from './options.js';
import type { ProducerPlan, RunPlan } from './plan.js';
import type { Random } from './random.js';
import type { SoakWorld } from './world.js';

/** One fault as it happened. */
export type FaultRecord = {
  index: number;
  kind: FaultKind;
  /** Seconds from the soak's start. */
  atS: number;
  durationS: number;
  /** False when nothing fitted (no live producer to kill, no completed job to retry...). */
  applied: boolean;
  target: string;
};

type Phase = 'waiting' | 'running' | 'joined' | 'retired' | 'abandoned';

/** One run while the soak drives it: its processes, what was done to it, where it is. */
export class LiveRun {
  phase: Phase = 'waiting';
  startedAt = 0;
  joinedAt: number | null = null;
  readonly producers: { plan: ProducerPlan; proc: ChaosProcess }[] = [];
  readonly consumers: ChaosProcess[] = [];
  /** Producers SIGKILLed and not yet started again. */
  pendingRestarts = 0;
  readonly killedProducers = new Set<string>();
  cancelled = false;
  readonly cancelledJobs = new Set<string>();
  /** Joins made by the soak's own calls (a cancel that found nothing left to wait for). */
  harnessJoins = 0;
  readonly retired: Promise<void>;
  private retire!: () => void;

  constructor(readonly plan: RunPlan) {
    this.retired = new Promise((resolve) => (this.retire = resolve));
  }

  get tag(): string {
    return this.plan.key;
  }

  get runId(): string {
    return this.plan.runId;
  }

  /** When the last of its producer processes exited, once none is left or due to restart; else null. */
  producersEndedAt(): number | null {
    if (this.pendingRestarts > 0 || this.producers.some((p) => p.proc.exited === null)) return null;
    return Math.max(this.startedAt, ...this.producers.map((p) => p.proc.exited!.at));
  }

  processes(): ChaosProcess[] {
    return [...this.producers.map((p) => p.proc), ...this.consumers];
  }

  end(phase: 'retired' | 'abandoned'): void {
    this.phase = phase;
    this.retire();
  }
}

/** What the run drivers and the faults share: the world, the runs, the ledgers, the fault log. */
export class SoakContext {
  readonly runs: LiveRun[] = [];
  readonly faults: FaultRecord[] = [];
  readonly workers: ChaosProcess[] = [];
  readonly killedPids = new Set<number>();
  readonly handlers: HandlerLedger;
  readonly puts: PutLedger;
  readonly queues: Queue<JobData>[];
  /** Failures found by faults themselves, after their run was checked (a retry past the retention). */
  readonly lateFailures: {
    run: string;
    runId: string;
    kind: 'leftover-keys';
    detail: string;
    atS: number;
  }[] = [];
  t0 = Date.now();
  /** When the last fault ended; while one is under way, `faultUnderWay` is true. */
  lastFaultEnd = 0;
  faultUnderWay = false;
  private labels = 0;

  constructor(
    readonly world: SoakWorld,
    readonly options: SoakOptions,
    readonly rng: Random,
    readonly log: (line: string) => void,
  ) {
    this.handlers = new HandlerLedger(world.files.handlers);
    this.puts = new PutLedger(world.files.puts);
    this.queues = openQueues(world.queue, world.shards, world.client);
  }

  /** Seconds since the soak started, for reports. */
  elapsedS(at = Date.now()): number {
    return Math.round((at - this.t0) / 100) / 10;
  }

  /** A plain worker: a consumer without RUN_ID, serving (and join-checking) every run on the queue. */
  spawnWorker(): ChaosProcess {
    const id = `w${++this.labels}`;
    const w = this.world.spawnConsumer(id, { CONSUMER_ID: id, CONCURRENCY: 6, FLUSH_MS: this.flushMs(id) });
    this.workers.push(w);
    return w;
  }

  spawnRunConsumer(run: LiveRun): ChaosProcess {
    const id = `${run.tag}-c${++this.labels}`;
    const c = this.world.spawnConsumer(id, {
      CONSUMER_ID: id,
      RUN_ID: run.runId,
      CONCURRENCY: 4,
      FLUSH_MS: this.flushMs(id),
    });
    run.consumers.push(c);
    return c;
  }

  /** A producer of the run (again, after a SIGKILL: the same PRODUCER_ID, as a restarted container). */
  spawnProducer(run: LiveRun, p: ProducerPlan): ChaosProcess {
    const label = `${run.tag}-${p.id}-${++this.labels}`;
    const plan = run.plan;
    const common = {
      RUN_ID: plan.runId,
      PRODUCERS: plan.producers.length,
      PRODUCER_ID: p.id,
      KEEP_COMPLETED: p.keep,
      KEEP_FAILED: p.keep,
      RUN_RETENTION_S: plan.retentionS,
    };
    const proc =
      p.kind === 'library'
        ? this.world.spawnLibraryProducer(label, {
            ...common,
            SOAK_TAG: plan.key,
            SOAK_PUTS: p.jobs,
            SOAK_SEED: p.seed,
            SOAK_ON_JOIN: plan.onJoin ? 1 : 0,
          })
        : this.world.spawnCliProducer(label, {
            ...common,
            JOBS: p.jobs,
            JOB_TYPE: 'soak-work',
            JOB_PAYLOAD: JSON.stringify({
              tag: plan.key,
              ms: plan.jobMs,
              ...(p.failAttempts ? { failAttempts: p.failAttempts } : {}),
            }),
            BATCH_SIZE: 10 + (p.seed % 16),
            PRODUCE_INTERVAL_MS: 100 + (p.seed % 150),
            ...(plan.onJoin
              ? { ON_JOIN_TYPE: 'soak-joined', ON_JOIN_PAYLOAD: JSON.stringify({ tag: plan.key }) }
              : {}),
          });
    run.producers.push({ plan: p, proc });
    return proc;
  }

  /** SIGKILL, remembered: a killed process's handlers never write their end line. */
  kill(p: ChaosProcess): void {
    this.killedPids.add(p.pid);
    p.signal('SIGKILL');
  }

  /** Ids of the run's puts that resolved so far (library ledger, CLI producers' logs), oldest first. */
  resolved(run: LiveRun): Set<string> {
    const ids = new Set(this.puts.refresh().resolved(run.tag));
    for (const p of run.producers)
      if (p.plan.kind === 'cli') for (const id of cliResolved(p.proc.output())) ids.add(id);
    return ids;
  }

  /** Runs started and not yet joined. */
  pending(): LiveRun[] {
    return this.runs.filter((r) => r.phase === 'running');
  }

  /** Joined runs whose retention has not run out yet (1 s of margin). */
  withinRetention(): LiveRun[] {
    return this.runs.filter(
      (r) =>
        r.phase === 'joined' &&
        r.joinedAt !== null &&
        r.joinedAt + r.plan.retentionS * 1000 - 1_000 > Date.now(),
    );
  }

  /** Runs started and not yet retired (joined ones wait out their retention). */
  active(): LiveRun[] {
    return this.runs.filter((r) => r.phase === 'running' || r.phase === 'joined');
  }

  async close(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.close()));
  }

  /** Half the consumers report finishes every 10 ms (the default), half every 150 ms: a bigger unreported batch. */
  private flushMs(label: string): number {
    return this.rng.fork(label).chance(0.5) ? 10 : 150;
  }
}
