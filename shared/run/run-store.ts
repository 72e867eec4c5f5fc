import type { RedisClient } from '../redis.js';
import {
  callbacksDueKey,
  idPrefixOfJob,
  pendingRunsKey,
  putsKey,
  queueShards,
  runCreationsKey,
  runExpiriesKey,
  runIndexKey,
  runKeys,
  shardRunKeys,
  type RunKeys,
  type Shard,
  type ShardRunKeys,
} from '../keys.js';
import { openShardQueue } from '../queue.js';
import { luaScript } from './lua-script.js';
import { endRunSpan, openRunTrace } from '../tracing/run-trace.js';
import { tracingOn } from '../tracing/tracer.js';
import {
  cancelJobLua,
  cancelRunLua,
  callbackMarkLua,
  countCallbackLua,
  callbackStateLua,
  checkRunLua,
  claimCallbacksLua,
  claimDueLua,
  closeShardLua,
  createRunLua,
  heartbeatProducerLua,
  initShardLua,
  announceReopenLua,
  joinRunLua,
  markCancelledLua,
  producerDoneLua,
  putJobsLua,
  PUT_QUEUE_KEY_NAMES,
  SHARD_RUN_KEY_NAMES,
  reconcileLua,
  recordFinishedLua,
  registerProducerLua,
  reopenLua,
  requestCancelLua,
  saveConsumerLua,
  settledRunLua,
  settleInstanceLua,
  storeResultLua,
  tallyProducerLua,
  trimCountedLua,
} from './scripts.js';
import { keysInOrder, RUN_SCRIPT_KEYS, SHARD_SCRIPT_KEYS } from './script-keys.js';
import type {
  CallbackSpec,
  ResultBounds,
  ConsumerRecord,
  FinishOutcome,
  JoinAttempt,
  JoinReason,
  ProducerState,
} from './types.js';

const runScripts = {
  createRun: luaScript(createRunLua),
  registerProducer: luaScript(registerProducerLua),
  heartbeatProducer: luaScript(heartbeatProducerLua),
  producerDone: luaScript(producerDoneLua),
  checkRun: luaScript(checkRunLua),
  settledRun: luaScript(settledRunLua),
  joinRun: luaScript(joinRunLua),
  announceReopen: luaScript(announceReopenLua),
  saveConsumer: luaScript(saveConsumerLua),
  requestCancel: luaScript(requestCancelLua),
  cancelRun: luaScript(cancelRunLua),
  claimCallbacks: luaScript(claimCallbacksLua),
  callbackState: luaScript(callbackStateLua),
};

const shardScripts = {
  initShard: luaScript(initShardLua),
  putJobs: luaScript(putJobsLua),
  trimCounted: luaScript(trimCountedLua),
  tallyProducer: luaScript(tallyProducerLua),
  recordFinished: luaScript(recordFinishedLua),
  reopen: luaScript(reopenLua),
  settleInstance: luaScript(settleInstanceLua),
  closeShard: luaScript(closeShardLua),
  reconcile: luaScript(reconcileLua),
  cancelJob: luaScript(cancelJobLua),
  markCancelled: luaScript(markCancelledLua),
  callbackMark: luaScript(callbackMarkLua),
  countCallback: luaScript(countCallbackLua),
  storeResult: luaScript(storeResultLua),
};

/** Open jobs one reconcile pass inspects (a bounded amount of work per join check). */
const RECONCILE_BATCH = 500;
const RECONCILE_INTERVAL_MS = 1_000;
const RECONCILE_GRACE_MS = 2_000;
/** Announced re-opens one apply call carries (a join check that finds some not applied). */
const REOPEN_BATCH = 200;
/** Counted jobs one trim call removes from BullMQ's finished sets. */
const TRIM_BATCH = 200;
/** How long a joined run's keys live unless the run was created with another retention. */
export const DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000;

/** A producer instance's id: the producer id for its first incarnation, `<id>~<n>` after. */
export function instanceId(producerId: string, incarnation: number): string {
  return incarnation === 1 ? producerId : `${producerId}~${incarnation}`;
}

/** A run-protocol refusal a person can act on (the message says what to do). */
export class RunError extends Error {
  constructor(
    readonly code:
      | 'joined'
      | 'full'
      | 'finished'
      | 'expected-mismatch'
      | 'expected-invalid'
      | 'shards-mismatch'
      | 'no-run'
      | 'no-producer'
      | 'fenced'
      | 'cancelled'
      | 'result-too-large'
      | 'results-full'
      | 'id-taken'
      | 'abandoned'
      | 'gone'
      | 'no-results'
      | 'not-joined',
    message: string,
  ) {
    super(message);
    this.name = 'RunError';
  }
}

export type RunEvent =
  | { type: 'joined'; joinedAt: number }
  /** The run waited too long for producers that never registered: it will never join. */
  | { type: 'abandoned'; abandonedAt: number }
  | { type: 'cancel'; consumer: string; reason: string }
  /** One job cancelled: whoever holds it aborts it; nobody starts it. */
  | { type: 'cancel-job'; run: string; jobId: string; at: number }
  /**
   * The run cancelled: producers stop, every job of the run not yet started is cancelled, active ones
   * aborted. `creation` is the run's id prefix: a later run with the same id is not cancelled.
   */
  | { type: 'cancel-run'; run: string; creation: string; at: number }
  | { type: 'callback'; name: string; state: string };

/** What cancelling one job did. */
export type CancelJobResult = {
  /**
   * removed: it was waiting, delayed or prioritized and never runs; signalled: it is running (or
   * just started) and whoever holds it aborts it; finished: already completed or failed (a no-op);
   * joined: the run has joined (a no-op); unknown: no such job in the run.
   */
  outcome: 'removed' | 'signalled' | 'finished' | 'joined' | 'unknown';
  shard?: number;
  /** This call's removal was the run's last unfinished job and it joined the run (exactly one call does). */
  joinedNow: boolean;
};

/** Who cancelled a run and why, as people will read it in status and on the dashboard. */
export type CancelledBy = { by?: string; reason?: string };

/** What cancelling the run did: `joined` is a no-op (the run had joined), `already` repeats the request. */
export type CancelRunResult = {
  outcome: 'cancelled' | 'already' | 'joined';
  /** When the run was cancelled, or joined (ms, Redis clock). */
  at: number;
  /** Jobs not yet started that this call removed and recorded cancelled. */
  removed: number;
  /** Nothing was left to wait for and this call joined the run (exactly one call across processes does). */
  joinedNow: boolean;
};

type ShardReply = [
  counted: number,
  duplicates: number,
  state: 'open' | 'closed' | 'gone',
  detail: string,
  trim: '0' | '1',
];
type CloseReply = [state: 'open' | 'closed' | 'behind', detail: string, cursor?: string, trim?: '0' | '1'];

/** A finished job as a consumer reports it to its run. */
export type FinishEntry = { id: string; outcome: FinishOutcome };

/** A job as `putJobs` stores it: `seq` is its place in its instance (absent for an idempotency key's job). */
export type StoredJob = { id: string; seq?: number; name: string; data: string };

/** What the run did with a job that was put back to work. */
export type ReopenOutcome = 'open' | 'reopened' | 'after-join' | 'uncounted' | 'gone';

/**
 * One run's state in Redis: producers, acknowledged jobs on each shard, consumers, the join and
 * cancellation. Stateless apart from the names it was built with, so any number of processes can
 * share a run.
 */
export class RunStore {
  readonly keys: RunKeys;
  readonly shards: readonly Shard[];
  readonly shardKeys: readonly ShardRunKeys[];
  private readonly runScriptKeys: string[];

  private readonly reconcileGraceMs: number;
  private readonly reconcileIntervalMs: number;

  /**
   * `reconcileGraceMs`: how long an open job must stay finished-but-unreported (or vanished) before
   * the join check counts it from BullMQ's record (a live consumer's report takes milliseconds).
   * `reconcileIntervalMs`: at most one reconcile pass per shard this often, across all processes.
   */
  constructor(
    private readonly redis: RedisClient,
    readonly queue: string,
    readonly runId: string,
    shardCount = 1,
    opts: { reconcileGraceMs?: number; reconcileIntervalMs?: number } = {},
  ) {
    this.reconcileGraceMs = opts.reconcileGraceMs ?? RECONCILE_GRACE_MS;
    this.reconcileIntervalMs = opts.reconcileIntervalMs ?? RECONCILE_INTERVAL_MS;
    this.keys = runKeys(queue, runId);
    this.shards = queueShards(queue, shardCount);
    this.shardKeys = this.shards.map((shard) => shardRunKeys(shard, runId));
    this.runScriptKeys = keysInOrder(RUN_SCRIPT_KEYS, {
      ...this.keys,
      runIndex: runIndexKey(queue),
      pendingRuns: pendingRunsKey(queue),
      expiries: runExpiriesKey(queue),
      callbacksDue: callbacksDueKey(queue),
      creations: runCreationsKey(queue),
    });
  }

  private runCall(script: keyof typeof runScripts, ...args: (string | number)[]): Promise<unknown> {
    return this.runCallWith([], script, ...args);
  }

  private runCallWith(
    extraKeys: readonly string[],
    script: keyof typeof runScripts,
    ...args: (string | number)[]
  ): Promise<unknown> {
    const keys = extraKeys.length > 0 ? [...this.runScriptKeys, ...extraKeys] : this.runScriptKeys;
    return runScripts[script](this.redis, keys, [this.keys.events, ...args]).catch((err: unknown) => {
      throw this.translate(err);
    });
  }

  private keysOf(shard: number): ShardRunKeys {
    const k = this.shardKeys[shard];
    if (!k) throw new RangeError(`shard ${shard} of ${this.shards.length}`);
    return k;
  }

  private shardCall(
    shard: number,
    script: keyof typeof shardScripts,
    extraKeys: readonly string[],
    ...args: (string | number)[]
  ): Promise<unknown> {
    const keys = [...keysInOrder(SHARD_SCRIPT_KEYS, this.keysOf(shard)), ...extraKeys];
    return shardScripts[script](this.redis, keys, args).catch((err: unknown) => {
      throw this.translate(err);
    });
  }

  private translate(err: unknown): unknown {
    if (!(err instanceof Error)) return err;
    // Redis may prefix a script's error reply with "ERR ".
    const [code, detail] = err.message.replace(/^ERR /, '').split(' ');
    const run = `run "${this.runId}" on queue "${this.queue}"`;
    switch (code) {
      case 'JOINED':
        return new RunError('joined', `The ${run} has already joined; start a new run with a new RUN_ID.`);
      case 'FULL':
        return new RunError(
          'full',
          `The ${run} expects ${detail} producers and all of them have registered.`,
        );
      case 'FINISHED':
        return new RunError(
          'finished',
          `This producer is already ${detail} in the ${run}; it cannot produce again.`,
        );
      case 'EXPECTED_MISMATCH':
        return new RunError(
          'expected-mismatch',
          `The ${run} was created expecting ${detail} producers; set PRODUCERS=${detail} or use a new RUN_ID.`,
        );
      case 'EXPECTED_INVALID':
        return new RunError('expected-invalid', `A run needs at least one producer (PRODUCERS=${detail}).`);
      case 'SHARDS_MISMATCH':
        return new RunError(
          'shards-mismatch',
          `The ${run} was created with ${detail} shards; set SHARDS=${detail} or use a new RUN_ID.`,
        );
      case 'NO_RUN':
        return new RunError(
          'no-run',
          `The ${run} does not exist: it was never created, or its state is gone from Redis (a restart without persistence, a flush, or its retention ran out).`,
        );
      case 'CANCELLED':
        return new RunError('cancelled', `The ${run} was cancelled; it takes no more producers.`);
      case 'ABANDONED':
        return new RunError(
          'abandoned',
          `The ${run} was abandoned (it waited longer than its abandon time for producers that never registered) and will never join; start a new run with a new RUN_ID.`,
        );
      case 'NO_PRODUCER':
        return new RunError('no-producer', `This producer is not registered in the ${run}.`);
      case 'RESULT_TOO_LARGE':
        return new RunError(
          'result-too-large',
          `A job's return value of ${detail} bytes is more than the ${err.message.split(' ').at(-1)} bytes the ${run} keeps per job (collectResults maxJobBytes); return less, or store it elsewhere and return a reference.`,
        );
      case 'RESULTS_FULL':
        return new RunError(
          'results-full',
          `The ${run} keeps at most ${err.message.split(' ').at(-1)} bytes of results per shard (collectResults maxRunBytes); this job's value would make it ${detail}.`,
        );
      case 'FENCED':
        return new RunError(
          'fenced',
          `This producer was declared lost, replaced by a restart with the same PRODUCER_ID, or has already reported done in the ${run}; its jobs are no longer accepted.`,
        );
      case 'ID_TAKEN':
        return new RunError(
          'id-taken',
          `Job id "${detail}" already exists on queue "${this.queue}" but the ${run} never stored it; nothing of this put was stored. Something outside conveyor wrote that id.`,
        );
      default:
        return err;
    }
  }

  /**
   * Creates the run if new. Returns false when it already existed (with the same expected count).
   * `leaseMs`: half of it without any process reaching the run counts as a Redis outage.
   * `retentionMs`: how long the run's keys live after it joins (0 keeps them).
   * `keep`: how many counted finished jobs BullMQ keeps per shard (KEEP_COMPLETED, KEEP_FAILED);
   * conveyor trims them itself, only once counted. null keeps all.
   */
  async create(
    expectedProducers: number,
    leaseMs = 10_000,
    retentionMs = DEFAULT_RETENTION_MS,
    callbacks: readonly CallbackSpec[] = [],
    afterRun = '',
    collectResults: ResultBounds | null = null,
    keep: { completed: number; failed: number } | null = null,
  ): Promise<boolean> {
    const [created, prefix] = (await this.runCallWith(
      // the predecessor, when it is a run of this queue (its keys share this slot), records its next
      afterRun ? [runKeys(this.queue, afterRun).meta] : [],
      'createRun',
      this.runId,
      expectedProducers,
      leaseMs,
      this.shards.length,
      retentionMs,
      callbacks.length > 0 ? JSON.stringify(callbacks) : '',
      afterRun,
      collectResults ? JSON.stringify(collectResults) : '',
    )) as [number, string];
    // Every create starts each shard's record (idempotent), so a creator that died half-way is made
    // good by the next producer's create.
    await Promise.all(
      this.shards.map((_, i) =>
        this.shardCall(i, 'initShard', [], prefix, keep?.completed ?? -1, keep?.failed ?? -1, retentionMs),
      ),
    );
    if (tracingOn()) await openRunTrace(this, prefix, afterRun ? runKeys(this.queue, afterRun).meta : null);
    return created === 1;
  }

  /** This creation's job id prefix (`<run>+<n>`): every job id of the run begins with it. */
  async idPrefix(): Promise<string> {
    const prefix = await this.storedIdPrefix();
    if (!prefix) throw this.translate(new Error('NO_RUN'));
    return prefix;
  }

  /** The run creation's id prefix, or null when the run's record is gone. */
  private async storedIdPrefix(): Promise<string | null> {
    return this.redis.hget(this.keys.meta, 'idPrefix');
  }

  /**
   * Claims the delivery of this run's due callbacks for `leaseMs` (see callbacks.ts): null when
   * nothing is due or another live claim holds them.
   */
  async claimCallbacks(
    token: string,
    leaseMs: number,
  ): Promise<{ callbacks: CallbackSpec[]; totals: string; pending: string[] } | null> {
    const reply = (await this.runCall('claimCallbacks', token, leaseMs, this.runId)) as string[];
    if (reply[0] !== 'claimed') return null;
    const [, callbacks, totals, ...pending] = reply;
    return { callbacks: JSON.parse(callbacks!) as CallbackSpec[], totals: totals ?? '{}', pending };
  }

  /** Records a callback's progress (never backwards); returns the state now recorded. */
  async callbackState(name: string, state: 'delivered' | 'started' | FinishOutcome): Promise<string | null> {
    return (await this.runCall('callbackState', name, state)) as string | null;
  }

  /** Each callback's state: pending, delivered, started, completed, failed or skipped. */
  async callbackStates(): Promise<Record<string, string>> {
    const meta = await this.redis.hgetall(this.keys.meta);
    const states: Record<string, string> = {};
    for (const [k, v] of Object.entries(meta)) if (k.startsWith('cb:')) states[k.slice(3)] = v;
    return states;
  }

  /** The bounds of the run's collected results, or null when it collects none. */
  async resultBounds(): Promise<ResultBounds | null> {
    const raw = await this.redis.hget(this.keys.meta, 'collectResults');
    return raw ? (JSON.parse(raw) as ResultBounds) : null;
  }

  /**
   * Keeps how a job ended (outcomes.ts: a completed job's value as JSON, or an ended record) and
   * appends it to the shard's stream of finished jobs; a RunError when it is past the run's bounds.
   */
  async storeResult(
    shard: number,
    jobId: string,
    stored: string,
    bounds: ResultBounds,
    outcome: 'completed' | 'failed' | 'cancelled' = 'completed',
  ): Promise<void> {
    await this.shardCall(
      shard,
      'storeResult',
      [this.keysOf(shard).finished],
      jobId,
      stored,
      bounds.maxJobBytes,
      bounds.maxRunBytes,
      outcome,
    );
  }

  /** Reads ('check') or sets the callback job's mark on the shard that holds it. */
  async callbackMark(
    shard: number,
    name: string,
    mark: 'check' | 'added' | 'started',
  ): Promise<string | null> {
    return (await this.shardCall(shard, 'callbackMark', [], name, mark)) as string | null;
  }

  /** The connection this store uses (for reads beside the scripts). */
  get client(): RedisClient {
    return this.redis;
  }

  async exists(): Promise<boolean> {
    return (await this.redis.exists(this.keys.meta)) === 1;
  }

  /** Fails with a RunError when the run exists with another shard count than this store's. */
  async checkShards(): Promise<void> {
    const recorded = await this.redis.hget(this.keys.meta, 'shards');
    if (recorded !== null && Number(recorded) !== this.shards.length)
      throw this.translate(new Error(`SHARDS_MISMATCH ${recorded}`));
  }

  /**
   * Registers a producer. An id that is still running in the run registers a new incarnation: the
   * earlier one is settled and fenced, and the new one's job ids never collide with its ids.
   */
  async registerProducer(
    id: string,
    info: { host: string; pid: number },
    leaseMs: number,
  ): Promise<{ incarnation: number; instance: string; idPrefix: string }> {
    const [, incarnation, idPrefix] = (await this.runCall(
      'registerProducer',
      id,
      JSON.stringify({ id, ...info }),
      leaseMs,
    )) as [number, number, string];
    return { incarnation, instance: instanceId(id, incarnation), idPrefix };
  }

  /**
   * Renews the lease; returns the producer's state ('lost' means the run gave up on it, 'cancelled'
   * that the run was cancelled: stop putting and report done).
   */
  async heartbeatProducer(
    id: string,
    leaseMs: number,
    incarnation = 1,
  ): Promise<ProducerState | 'missing' | 'superseded' | 'cancelled'> {
    return (await this.runCall('heartbeatProducer', id, incarnation, leaseMs)) as
      ProducerState | 'missing' | 'superseded' | 'cancelled';
  }

  /**
   * Stores jobs in the shard's BullMQ queue and acknowledges them in the run, atomically (see
   * putJobsLua). `options`: the jobs' BullMQ options, already in the JSON BullMQ stores (without
   * jobId). Returns how many the run acknowledged now, plus those an earlier send of the same put had
   * already stored (a retried send after a lost reply). Fails with RunError 'fenced', writing nothing,
   * when this instance was declared lost or superseded.
   */
  async putJobs(
    shard: number,
    instance: string,
    options: string,
    jobs: readonly StoredJob[],
  ): Promise<{ acknowledged: number; storedBefore: number }> {
    const k = this.keysOf(shard);
    const keys: string[] = PUT_QUEUE_KEY_NAMES.map((name) => k.jobPrefix + name);
    // The ids name their creation; the script refuses the batch if that is not the run's current one.
    keys.push(putsKey(k, idPrefixOfJob(jobs[0]?.id ?? '') ?? '', instance));
    const args: (string | number)[] = [instance, Date.now(), options];
    for (const job of jobs) {
      keys.push(k.jobPrefix + job.id);
      args.push(job.seq ?? '', job.id, job.name, job.data);
    }
    const [acknowledged, storedBefore] = (await this.shardCall(shard, 'putJobs', keys, ...args)) as [
      number,
      number,
    ];
    return { acknowledged, storedBefore };
  }

  /** Acknowledged jobs not yet finished, over every shard. */
  async unfinished(): Promise<number> {
    const counts = await Promise.all(this.shardKeys.map((k) => this.redis.scard(k.open)));
    return counts.reduce((a, b) => a + b, 0);
  }

  /**
   * Reports the producer done, then tries to join. `producedPerShard`: how many acknowledgements the
   * producer itself counted on each shard, checked against what each shard holds. The state is
   * 'lost' or 'superseded' when the run gave up on this incarnation first.
   */
  async producerDone(
    producerId: string,
    producedPerShard: readonly number[] = [],
    incarnation = 1,
    opts: { stoppedEarly?: boolean } = {},
  ): Promise<{ state: ProducerState | 'superseded'; join: JoinAttempt }> {
    const instance = instanceId(producerId, incarnation);
    const missing = await Promise.all(
      this.shards.map(
        async (_, i) =>
          Number(await this.shardCall(i, 'tallyProducer', [], instance, producedPerShard[i] ?? 0)) || 0,
      ),
    );
    const produced = producedPerShard.reduce((a, b) => a + b, 0);
    const lost = missing.reduce((a, b) => a + b, 0);
    const ended = opts.stoppedEarly ? 'stopped' : 'all';
    const state = (await this.runCall('producerDone', producerId, incarnation, produced, lost, ended)) as
      ProducerState | 'superseded';
    return { state, join: await this.tryJoin() };
  }

  /** Finished jobs on one shard. A run that is gone counts nothing (`join.reason` 'no-run'). */
  async recordFinished(
    shard: number,
    entries: readonly FinishEntry[],
  ): Promise<{ counted: number; duplicates: number; join: JoinAttempt }> {
    const [counted, duplicates, state, detail] = await this.recordOnShard(shard, entries);
    if (state === 'gone') return { counted, duplicates, join: toAttempt('no-run', '0') };
    // Empty here may mean the whole run is done: only the run's own check can tell.
    const mayJoin = state === 'closed' || detail === '0';
    const join = mayJoin ? await this.tryJoin() : toAttempt('jobs-unfinished', detail);
    return { counted, duplicates, join };
  }

  private async recordOnShard(shard: number, entries: readonly FinishEntry[]): Promise<ShardReply> {
    const k = this.keysOf(shard);
    const keys = entries.map((e) => k.jobPrefix + e.id);
    const args = entries.flatMap((e) => [e.id, e.outcome]);
    const reply = (await this.shardCall(shard, 'recordFinished', keys, ...args)) as ShardReply;
    if (reply[4] === '1') await this.trimCounted(shard);
    return reply;
  }

  /**
   * A join callback's job finished: it is trimmed like a counted job (its state is in the run's meta).
   * `jobId` must be this run's callback job on `shard`.
   */
  async countCallback(shard: number, jobId: string, outcome: FinishOutcome): Promise<void> {
    const k = this.keysOf(shard);
    const trim = await this.shardCall(shard, 'countCallback', [k.jobPrefix + jobId], jobId, outcome);
    if (trim === '1') await this.trimCounted(shard);
  }

  /**
   * Trims BullMQ's completed and failed sets of a shard to the run's keep, removing only jobs the run
   * counted (see trimCountedLua). A crash half-way leaves the ids listed: the next trim takes them.
   */
  async trimCounted(shard: number): Promise<void> {
    const k = this.keysOf(shard);
    const meta = await this.redis.hmget(k.meta, 'keepCompleted', 'keepFailed');
    for (const [list, finished, keep] of [
      [k.countedCompleted, k.completed, meta[0]],
      [k.countedFailed, k.failed, meta[1]],
    ] as const) {
      const n = Number(keep ?? -1);
      if (!(n >= 0)) continue;
      for (let round = 0; round < 10; round++) {
        const ids = await this.redis.lrange(list, n, n + TRIM_BATCH - 1);
        if (ids.length === 0) break;
        const keys = [list, finished, ...ids.flatMap((id) => [k.jobPrefix + id, `${k.jobPrefix}${id}:logs`])];
        await this.shardCall(shard, 'trimCounted', keys, ...ids);
        if (ids.length < TRIM_BATCH) break;
      }
    }
  }

  /**
   * Job ids cancelled one by one on any shard, read only when a shard's count changed since
   * `known` (a consumer's backstop for a missed event). Returns the counts to pass next time.
   */
  async cancelledJobs(known: readonly number[] = []): Promise<{ ids: string[]; counts: number[] }> {
    const counts = await Promise.all(this.shardKeys.map((k) => this.redis.scard(k.cancelled)));
    const changed = counts.map((n, i) => n !== (known[i] ?? 0));
    const ids = await Promise.all(
      this.shardKeys.map((k, i) => (changed[i] ? this.redis.smembers(k.cancelled) : Promise.resolve([]))),
    );
    return { ids: ids.flat(), counts };
  }

  /**
   * A job the run counted is about to run again (a retry from Bull Board or `job.retry()`, with or
   * without fresh attempt counters): re-open it while the run is pending, or record it as work after
   * the join. The run decides first, in its own record (announceReopenLua); then the job's shard
   * applies it. A join check that finds an announcement not applied (its consumer died in between)
   * applies it itself, so the run never joins past a job that is running again.
   */
  async reopen(shard: number, jobId: string): Promise<ReopenOutcome> {
    const announced = (await this.runCall('announceReopen', shard, jobId)) as string;
    if (announced === 'gone') return 'gone';
    const jobKey = this.keysOf(shard).jobPrefix + jobId;
    const [outcome] = (
      announced === 'after-join'
        ? await this.shardCall(shard, 'reopen', [jobKey], 'after-join', jobId)
        : await this.shardCall(shard, 'reopen', [jobKey], 'apply', announced, jobId)
    ) as [ReopenOutcome | 'applied'];
    // 'applied': a join check applied this very announcement first, re-opening the job.
    return outcome === 'applied' ? 'reopened' : outcome;
  }

  /** How many re-opens the run has announced for each shard. */
  private async announcedReopens(): Promise<number[]> {
    const fields = this.shards.map((_, i) => `reopens:${i}`);
    return (await this.redis.hmget(this.keys.meta, ...fields)).map((n) => Number(n ?? 0));
  }

  /** Applies the first `count` re-opens announced for `shard` (those applied before are skipped). */
  private async applyAnnouncedReopens(shard: number, count: number): Promise<void> {
    const k = this.keysOf(shard);
    for (let from = 1; from <= count; from += REOPEN_BATCH) {
      const numbers = Array.from({ length: Math.min(REOPEN_BATCH, count - from + 1) }, (_, i) => from + i);
      const ids = await this.redis.hmget(this.keys.meta, ...numbers.map((n) => `reopen:${shard}:${n}`));
      const pairs = numbers.flatMap((n, i) => [n, ids[i] ?? '']);
      await this.shardCall(
        shard,
        'reopen',
        ids.map((id) => k.jobPrefix + (id ?? '')),
        'apply',
        ...pairs,
      );
    }
  }

  /**
   * The distributed queue.join(): asks the run whether every producer has finished, settles dead
   * producer instances on every shard, has each shard close (reconciling a bounded batch of open
   * jobs when due), then joins the run if every shard closed. Any process may call it any number of
   * times; exactly one call across all of them gets `joinedNow`.
   *
   * `abandonMs`: how long the run may wait for producers that never registered (with none running)
   * before it is abandoned (reason `abandoned-now`, once); default the run's retention, 0 never.
   */
  async tryJoin(opts: { abandonMs?: number } = {}): Promise<JoinAttempt> {
    const abandonMs = opts.abandonMs ?? '';
    const [firstReason, firstDetail, firstRetention, cancelled, ...unsettled] = (await this.runCall(
      'checkRun',
      this.runId,
      abandonMs,
    )) as [string, string, string, string, ...string[]];
    let [reason, detail, retention] = [firstReason, firstDetail, firstRetention];
    // The run's own keys got its retention in the same step; its shards' keys get it here.
    if (reason === 'abandoned-now') await this.expireShards(Number(retention));
    if (unsettled.length > 0) {
      await this.settle(unsettled);
      if (reason === 'producers-settling')
        [reason, detail, retention] = (await this.runCall('checkRun', this.runId, abandonMs)) as [
          string,
          string,
          string,
        ];
    }
    // A cancelled run: jobs acknowledged since the cancel (or missed by it) are cancelled here.
    if (cancelled === '1') await this.sweepCancelled();
    if (reason !== 'producers-finished') return toAttempt(reason as JoinReason, detail);
    // Read before the shards: a re-open announced after this makes joinRun refuse what they say.
    const announced = await this.announcedReopens();
    const shards = await Promise.all(this.shards.map((_, i) => this.closeShard(i, retention, announced[i]!)));
    const open = shards.filter(([state]) => state !== 'closed');
    if (open.length > 0)
      return toAttempt('jobs-unfinished', String(open.reduce((n, [, d]) => n + Number(d), 0)));
    // Every producer has finished: no put is on its way any more, so the bitmaps may now expire.
    await this.expirePutBitmaps(Number(retention));
    const [r, d] = (await this.runCall(
      'joinRun',
      JSON.stringify(announced),
      ...shards.map(([, totals]) => totals),
    )) as [JoinReason, string];
    // Exactly one call joins the run: it ends the run's trace (a failed export never fails the join).
    if (r === 'joined-now' && tracingOn()) await endRunSpan(this).catch(() => undefined);
    return toAttempt(r, d);
  }

  private async closeShard(shard: number, retention: string, announced: number): Promise<CloseReply> {
    const close = async () =>
      (await this.shardCall(
        shard,
        'closeShard',
        [],
        retention,
        this.reconcileIntervalMs,
        announced,
      )) as CloseReply;
    let reply = await close();
    if (reply[0] === 'behind') {
      await this.applyAnnouncedReopens(shard, announced);
      reply = await close();
    }
    const [state, , cursor] = reply;
    if (state !== 'open' || !cursor) return reply;
    const k = this.keysOf(shard);
    const [next, ids] = await this.redis.sscan(k.open, cursor, 'COUNT', String(RECONCILE_BATCH));
    const reconciled = (await this.shardCall(
      shard,
      'reconcile',
      [k.failed, ...ids.map((id) => k.jobPrefix + id)],
      next,
      retention,
      this.reconcileGraceMs,
      ...ids,
    )) as CloseReply;
    if (reconciled[3] === '1') await this.trimCounted(shard);
    return reconciled;
  }

  /** Gives every shard's keys of the run `ttlMs` to live (an abandoned run's shards never close). */
  private async expireShards(ttlMs: number): Promise<void> {
    if (ttlMs <= 0) return;
    await Promise.all(
      this.shardKeys.flatMap((k) => SHARD_RUN_KEY_NAMES.map((name) => this.redis.pexpire(k[name], ttlMs))),
    );
    await this.expirePutBitmaps(ttlMs);
  }

  /**
   * Gives the producer instances' put bitmaps `ttlMs` to live. They live as long as the run: a put
   * sent again after a lost reply may come any time before its producer is done, however long the
   * run takes, so they get the run's retention only once every producer has finished (at the join,
   * or when the run is abandoned). Every instance that stored a job on a shard is in its producedBy.
   */
  private async expirePutBitmaps(ttlMs: number): Promise<void> {
    if (ttlMs <= 0) return;
    // A run already gone has no bitmaps of its creation left to expire.
    const idPrefix = await this.storedIdPrefix();
    if (!idPrefix) return;
    await Promise.all(
      this.shardKeys.map(async (k) => {
        const instances = await this.redis.hkeys(k.producedBy);
        await Promise.all(instances.map((i) => this.redis.pexpire(putsKey(k, idPrefix, i), ttlMs)));
      }),
    );
  }

  /** Fences dead instances on every shard (their later puts write nothing), then tells the run. */
  private async settle(instances: readonly string[]): Promise<void> {
    await Promise.all(
      instances.flatMap((instance) =>
        this.shards.map((_, shard) => this.shardCall(shard, 'settleInstance', [], instance)),
      ),
    );
    await this.runCall('settledRun', ...instances);
  }

  async isJoined(): Promise<boolean> {
    return (await this.redis.hget(this.keys.meta, 'state')) === 'joined';
  }

  /** Saves a consumer's record; its heartbeat time is Redis's (returned). */
  async saveConsumer(record: ConsumerRecord): Promise<number> {
    return Number(await this.runCall('saveConsumer', record.id, JSON.stringify(record)));
  }

  /** The run's id prefix when this creation of it was cancelled, else null. */
  async cancelledCreation(): Promise<string | null> {
    const [at, prefix] = await this.redis.hmget(this.keys.meta, 'cancelledAt', 'idPrefix');
    return at && prefix ? prefix : null;
  }

  /** When the run was cancelled (ms, Redis clock), or null. */
  async cancelledAt(): Promise<number | null> {
    const at = await this.redis.hget(this.keys.meta, 'cancelledAt');
    return at === null ? null : Number(at);
  }

  /**
   * asyncio's `task.cancel()` for one job, from any process. Waiting, delayed or prioritized: removed
   * and recorded cancelled (it never runs). Running: the consumer holding it aborts its handler (it
   * is told on the events channel) and records it cancelled. Finished, or the run joined: a no-op.
   */
  async cancelJob(jobId: string): Promise<CancelJobResult> {
    const event: RunEvent = { type: 'cancel-job', run: this.runId, jobId, at: Date.now() };
    // The job's own shard decides: another shard that closed knows nothing of it.
    for (let shard = 0; shard < this.shards.length; shard++) {
      const k = this.keysOf(shard);
      const state = (await this.shardCall(shard, 'cancelJob', [k.jobPrefix + jobId], jobId)) as
        'after-join' | 'unknown' | 'finished' | 'cancelling';
      if (state === 'after-join') return { outcome: 'joined', shard, joinedNow: false };
      if (state === 'unknown') continue;
      if (state === 'finished') return { outcome: 'finished', shard, joinedNow: false };
      // Remove first, tell the holder after: told first, a consumer could abort it and release its
      // lock before the remove, which would then delete a finished job.
      const { removed, mayJoin } = await this.removeUnstarted(shard, [jobId]);
      if (removed > 0) {
        const joinedNow = mayJoin ? (await this.tryJoin()).joinedNow : false;
        return { outcome: 'removed', shard, joinedNow };
      }
      await this.redis.publish(this.keys.events, JSON.stringify(event));
      return { outcome: 'signalled', shard, joinedNow: false };
    }
    // Not found on any shard: a no-op either way, but `joined` only for an id of this run (its job
    // may have been trimmed since) when the run itself has joined; any other id is unknown.
    const ours = idPrefixOfJob(jobId) === (await this.redis.hget(this.keys.meta, 'idPrefix'));
    return { outcome: ours && (await this.isJoined()) ? 'joined' : 'unknown', joinedNow: false };
  }

  /**
   * Cancels the run: producers stop putting and report done, registering is refused, every job not
   * yet started is removed and recorded cancelled (here, and by every later join check, so jobs
   * acknowledged after this call are caught too), and consumers abort the run's active jobs. The run
   * then joins as usual, with the cancelled count in its totals. A joined run is left as it is.
   */
  async cancel(who: CancelledBy = {}): Promise<CancelRunResult> {
    const [outcome, at] = (await this.runCall('cancelRun')) as [CancelRunResult['outcome'], string];
    if (outcome === 'joined') return { outcome, at: Number(at), removed: 0, joinedNow: false };
    // Unstarted jobs first, then the word to consumers (an aborted job releases its slot, and a
    // consumer could take, refuse and finish a waiting job while this sweep reads it).
    const removed = await this.sweepCancelled();
    // For people (status, the dashboard): who asked, why, and what the first call removed at once.
    if (outcome === 'cancelled')
      await this.redis.hset(this.keys.meta, {
        cancelRemoved: removed,
        ...(who.by ? { cancelledBy: who.by.slice(0, 200) } : {}),
        ...(who.reason ? { cancelReason: who.reason.slice(0, 200) } : {}),
      });
    const event: RunEvent = {
      type: 'cancel-run',
      run: this.runId,
      creation: await this.idPrefix(),
      at: Number(at),
    };
    await this.redis.publish(this.keys.events, JSON.stringify(event));
    // Producers that ended before the cancel may leave nothing to wait for: try the join now.
    const { joinedNow } = await this.tryJoin();
    return { outcome, at: Number(at), removed, joinedNow };
  }

  /** Removes the cancelled run's unstarted jobs on every shard (a bounded amount per call) and records them. */
  private async sweepCancelled(): Promise<number> {
    let removed = 0;
    for (let shard = 0; shard < this.shards.length; shard++) {
      const k = this.keysOf(shard);
      let cursor = '0';
      for (let round = 0; round < 4; round++) {
        const [next, ids] = await this.redis.sscan(k.open, cursor, 'COUNT', String(RECONCILE_BATCH));
        removed += (await this.removeUnstarted(shard, ids)).removed;
        cursor = next;
        if (cursor === '0') break;
      }
    }
    return removed;
  }

  /**
   * Removes those of `ids` that have not started (a job a worker holds is locked: BullMQ refuses; one
   * that started is left to the consumer holding it, or to its refusal at start) and
   * records them cancelled. Each is marked cancelled first, so one whose record is lost (this process
   * dies between the two) is still counted cancelled by the join check.
   */
  private async removeUnstarted(
    shard: number,
    ids: readonly string[],
  ): Promise<{ removed: number; mayJoin: boolean }> {
    const none = { removed: 0, mayJoin: false };
    if (ids.length === 0) return none;
    const k = this.keysOf(shard);
    // Only jobs that never started, or wait for a retry: a job that started and is not delayed may be
    // active, or may finish between this read and the remove (which would then delete a finished job).
    const rows = await Promise.all(
      ids.map((id) =>
        Promise.all([
          this.redis.hmget(k.jobPrefix + id, 'data', 'finishedOn', 'processedOn'),
          this.redis.zscore(k.jobPrefix + 'delayed', id),
        ]),
      ),
    );
    const candidates = ids.filter((_, i) => {
      const [[data, finishedOn, processedOn], delayed] = rows[i]!;
      return data !== null && !finishedOn && (!processedOn || delayed !== null);
    });
    if (candidates.length === 0) return none;
    // The ids come from the run's open set: all of this creation (the script checks each anyway).
    if (Number(await this.shardCall(shard, 'markCancelled', [], ...candidates)) === 0) return none;
    const queue = openShardQueue(this.shards[shard]!, this.redis);
    try {
      const codes = await Promise.all(candidates.map((id) => queue.remove(id).catch(() => 0)));
      const entries = candidates
        .filter((_, i) => codes[i] === 1)
        .map((id) => ({ id, outcome: 'cancelled' as const }));
      if (entries.length === 0) return none;
      const [, , state, detail] = await this.recordOnShard(shard, entries);
      return { removed: entries.length, mayJoin: state === 'closed' || detail === '0' };
    } finally {
      await queue.close();
    }
  }

  /** Asks one consumer (or '*' for all) to cancel: it stops taking work and exits after its jobs. */
  async requestCancel(consumer: string, reason: string): Promise<void> {
    const event: RunEvent = { type: 'cancel', consumer, reason };
    await this.runCall('requestCancel', consumer, JSON.stringify(event));
  }

  /** Why this consumer should stop, or null: the run joined, or someone cancelled it (or everyone). */
  async cancelReason(consumerId: string): Promise<string | null> {
    const [state, mine, all] = await Promise.all([
      this.redis.hget(this.keys.meta, 'state'),
      this.redis.sismember(this.keys.cancel, consumerId),
      this.redis.sismember(this.keys.cancel, '*'),
    ]);
    if (state === 'joined') return 'run joined';
    if (state === 'abandoned') return 'run abandoned';
    if (mine === 1 || all === 1) return 'cancel requested';
    return null;
  }
}

/** Joined runs of a queue whose callbacks are not all delivered yet (the outbox), the most overdue first. */
export async function listCallbacksDue(redis: RedisClient, queue: string, limit = 50): Promise<string[]> {
  return redis.zrange(callbacksDueKey(queue), '0', String(limit - 1));
}

/** Runs of a queue that have not joined yet, the most overdue for a join check first. */
export async function listPendingRuns(redis: RedisClient, queue: string, limit = 50): Promise<string[]> {
  return redis.zrange(pendingRunsKey(queue), '0', String(limit - 1));
}

const claimDue = luaScript(claimDueLua);

/**
 * Takes up to `limit` of the queue's pending runs that are due for a join check, the most overdue
 * first, and schedules each for its next check `againInMs` later (what a worker without RUN_ID checks
 * on each heartbeat). Every pending run is taken in turn, however many others never join.
 */
export async function claimDuePendingRuns(
  redis: RedisClient,
  queue: string,
  limit: number,
  againInMs: number,
): Promise<string[]> {
  return (await claimDue(redis, [pendingRunsKey(queue)], [limit, againInMs])) as string[];
}

/** The same for the callbacks outbox: joined runs whose callbacks are due for a delivery attempt. */
export async function claimDueCallbacks(
  redis: RedisClient,
  queue: string,
  limit: number,
  againInMs: number,
): Promise<string[]> {
  return (await claimDue(redis, [callbacksDueKey(queue)], [limit, againInMs])) as string[];
}

function toAttempt(reason: JoinReason, detail: string): JoinAttempt {
  const joined = reason === 'joined' || reason === 'joined-now';
  return { reason, joined, joinedNow: reason === 'joined-now', detail: Number(detail) };
}

/** Parses a message from the run's events channel; null for anything malformed. */
export function parseRunEvent(message: string): RunEvent | null {
  try {
    const v = JSON.parse(message) as Partial<RunEvent>;
    if (v.type === 'joined' && typeof v.joinedAt === 'number')
      return { type: 'joined', joinedAt: v.joinedAt };
    if (v.type === 'abandoned' && typeof v.abandonedAt === 'number')
      return { type: 'abandoned', abandonedAt: v.abandonedAt };
    if (v.type === 'cancel-job' && typeof v.run === 'string' && typeof v.jobId === 'string')
      return { type: 'cancel-job', run: v.run, jobId: v.jobId, at: Number(v.at) || 0 };
    if (v.type === 'cancel-run' && typeof v.run === 'string' && typeof v.creation === 'string')
      return { type: 'cancel-run', run: v.run, creation: v.creation, at: Number(v.at) || 0 };
    if (v.type === 'cancel' && typeof v.consumer === 'string')
      return {
        type: 'cancel',
        consumer: v.consumer,
        reason: typeof v.reason === 'string' ? v.reason : 'cancel',
      };
    if (v.type === 'callback' && typeof v.name === 'string' && typeof v.state === 'string')
      return { type: 'callback', name: v.name, state: v.state };
  } catch {
    // not ours
  }
  return null;
}
