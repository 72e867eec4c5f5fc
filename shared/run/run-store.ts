import type { RedisClient } from '../redis.js';
import {
  queueShards,
  runIndexKey,
  runKeys,
  shardRunKeys,
  type RunKeys,
  type Shard,
  type ShardRunKeys,
} from '../keys.js';
import { luaScript } from './lua-script.js';
import {
  ackAddedLua,
  checkRunLua,
  createRunLua,
  heartbeatProducerLua,
  joinRunLua,
  producerDoneLua,
  recordFinishedLua,
  registerProducerLua,
  settleShardLua,
  tallyProducerLua,
} from './scripts.js';
import type { ConsumerRecord, FinishOutcome, JoinAttempt, JoinReason, ProducerState } from './types.js';

const runScripts = {
  createRun: luaScript(createRunLua),
  registerProducer: luaScript(registerProducerLua),
  heartbeatProducer: luaScript(heartbeatProducerLua),
  producerDone: luaScript(producerDoneLua),
  checkRun: luaScript(checkRunLua),
  joinRun: luaScript(joinRunLua),
};

const shardScripts = {
  ackAdded: luaScript(ackAddedLua),
  tallyProducer: luaScript(tallyProducerLua),
  recordFinished: luaScript(recordFinishedLua),
  settleShard: luaScript(settleShardLua),
};

/** Open jobs the join check will inspect one by one for a consumer that died after finishing them. */
const RECONCILE_LIMIT = 1_000;

/** A run-protocol refusal a person can act on (the message says what to do). */
export class RunError extends Error {
  constructor(
    readonly code:
      'joined' | 'full' | 'finished' | 'expected-mismatch' | 'shards-mismatch' | 'no-run' | 'no-producer',
    message: string,
  ) {
    super(message);
    this.name = 'RunError';
  }
}

export type RunEvent =
  { type: 'joined'; joinedAt: number } | { type: 'cancel'; consumer: string; reason: string };

type ShardReply = [counted: number, duplicates: number, state: 'open' | 'closed', detail: string];

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

  constructor(
    private readonly redis: RedisClient,
    readonly queue: string,
    readonly runId: string,
    shardCount = 1,
  ) {
    this.keys = runKeys(queue, runId);
    this.shards = queueShards(queue, shardCount);
    this.shardKeys = this.shards.map((shard) => shardRunKeys(shard, runId));
    const k = this.keys;
    this.runScriptKeys = [k.meta, k.producers, k.leases, runIndexKey(queue)];
  }

  private runCall(script: keyof typeof runScripts, ...args: (string | number)[]): Promise<unknown> {
    return runScripts[script](this.redis, this.runScriptKeys, [this.keys.events, ...args]).catch(
      (err: unknown) => {
        throw this.translate(err);
      },
    );
  }

  private keysOf(shard: number): ShardRunKeys {
    const k = this.shardKeys[shard];
    if (!k) throw new RangeError(`shard ${shard} of ${this.shards.length}`);
    return k;
  }

  private shardCall(
    shard: number,
    script: keyof typeof shardScripts,
    ...args: (string | number)[]
  ): Promise<unknown> {
    const k = this.keysOf(shard);
    const keys = [k.meta, k.open, k.early, k.keyed, k.producedBy, k.gone];
    return shardScripts[script](this.redis, keys, [k.inflightPrefix, k.jobPrefix, ...args]);
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
      case 'SHARDS_MISMATCH':
        return new RunError(
          'shards-mismatch',
          `The ${run} was created with ${detail} shards; set SHARDS=${detail} or use a new RUN_ID.`,
        );
      case 'NO_RUN':
        return new RunError('no-run', `The ${run} does not exist.`);
      case 'NO_PRODUCER':
        return new RunError('no-producer', `This producer is not registered in the ${run}.`);
      default:
        return err;
    }
  }

  /** Creates the run if new. Returns false when it already existed (with the same expected count). */
  /** `leaseMs` sets how long a silence across all processes counts as a Redis outage (half of it). */
  async create(expectedProducers: number, leaseMs = 10_000): Promise<boolean> {
    return (
      (await this.runCall('createRun', this.runId, expectedProducers, leaseMs, this.shards.length)) === 1
    );
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

  async registerProducer(id: string, info: { host: string; pid: number }, leaseMs: number): Promise<void> {
    await this.runCall('registerProducer', id, JSON.stringify({ id, ...info }), leaseMs);
  }

  /** Renews the lease; returns the producer's state ('lost' means the run gave up on it). */
  async heartbeatProducer(id: string, leaseMs: number): Promise<ProducerState | 'missing'> {
    return (await this.runCall('heartbeatProducer', id, leaseMs)) as ProducerState | 'missing';
  }

  /** Records ids about to be sent to a shard, so a producer that dies mid-add can be settled later. */
  async markInflight(shard: number, producerId: string, jobIds: readonly string[]): Promise<void> {
    const k = this.keysOf(shard);
    if (jobIds.length > 0) await this.redis.sadd(k.inflightPrefix + producerId, ...jobIds);
  }

  /**
   * Ids whose add Redis acknowledged: from now on they hold the join back until finished. Ids put
   * with an idempotency key are named in `keyedIds` too, so the run remembers the key for good.
   */
  async ackAdded(
    shard: number,
    producerId: string,
    jobIds: readonly string[],
    keyedIds: ReadonlySet<string> = new Set(),
  ): Promise<number> {
    if (jobIds.length === 0) return 0;
    const args = jobIds.map((id) => (keyedIds.has(id) ? `k:${id}` : id));
    return Number(await this.shardCall(shard, 'ackAdded', producerId, ...args));
  }

  /** Of these keyed job ids on one shard, the ones this run already accepted (their key was used before). */
  async acceptedKeyed(shard: number, jobIds: readonly string[]): Promise<Set<string>> {
    const k = this.keysOf(shard);
    if (jobIds.length === 0) return new Set();
    const seen = await this.redis.smismember(k.keyed, ...jobIds);
    return new Set(jobIds.filter((_, i) => seen[i] === 1));
  }

  /** Acknowledged jobs not yet finished, over every shard. */
  async unfinished(): Promise<number> {
    const counts = await Promise.all(this.shardKeys.map((k) => this.redis.scard(k.open)));
    return counts.reduce((a, b) => a + b, 0);
  }

  /**
   * Reports the producer done, then tries to join. `producedPerShard`: how many acknowledgements the
   * producer itself counted on each shard, checked against what each shard holds.
   */
  async producerDone(
    producerId: string,
    producedPerShard: readonly number[] = [],
  ): Promise<{ state: ProducerState; join: JoinAttempt }> {
    const missing = await Promise.all(
      this.shards.map(
        async (_, i) =>
          Number(await this.shardCall(i, 'tallyProducer', producerId, producedPerShard[i] ?? 0)) || 0,
      ),
    );
    const produced = producedPerShard.reduce((a, b) => a + b, 0);
    const lost = missing.reduce((a, b) => a + b, 0);
    const state = (await this.runCall('producerDone', producerId, produced, lost)) as ProducerState;
    return { state, join: await this.tryJoin() };
  }

  async recordFinished(
    shard: number,
    entries: readonly { id: string; outcome: FinishOutcome }[],
  ): Promise<{ counted: number; duplicates: number; join: JoinAttempt }> {
    const args = entries.flatMap((e) => [e.id, e.outcome]);
    const [counted, duplicates, state, detail] = (await this.shardCall(
      shard,
      'recordFinished',
      ...args,
    )) as ShardReply;
    // Empty here may mean the whole run is done: only the run's own check can tell.
    const mayJoin = state === 'closed' || detail === '0';
    const join = mayJoin ? await this.tryJoin() : toAttempt('jobs-unfinished', detail);
    return { counted, duplicates, join };
  }

  /**
   * The distributed queue.join(): asks the run whether every producer has finished, then has each
   * shard settle and close, then joins the run if every shard closed. Any process may call it any
   * number of times; exactly one call across all of them gets `joinedNow`.
   */
  async tryJoin(): Promise<JoinAttempt> {
    const [reason, detail, ...lost] = (await this.runCall('checkRun')) as [string, string, ...string[]];
    if (reason !== 'producers-finished') return toAttempt(reason as JoinReason, detail);
    const shards = (await Promise.all(
      this.shards.map((_, i) => this.shardCall(i, 'settleShard', RECONCILE_LIMIT, ...lost)),
    )) as [state: 'open' | 'closed', detail: string][];
    const open = shards.filter(([state]) => state === 'open');
    if (open.length > 0)
      return toAttempt('jobs-unfinished', String(open.reduce((n, [, d]) => n + Number(d), 0)));
    const [r, d] = (await this.runCall('joinRun', ...shards.map(([, totals]) => totals))) as [
      JoinReason,
      string,
    ];
    return toAttempt(r, d);
  }

  async isJoined(): Promise<boolean> {
    return (await this.redis.hget(this.keys.meta, 'state')) === 'joined';
  }

  async saveConsumer(record: ConsumerRecord): Promise<void> {
    await this.redis.hset(this.keys.consumers, record.id, JSON.stringify(record));
  }

  /** Asks one consumer (or '*' for all) to cancel: it stops taking work and exits after its jobs. */
  async requestCancel(consumer: string, reason: string): Promise<void> {
    await this.redis.sadd(this.keys.cancel, consumer);
    const event: RunEvent = { type: 'cancel', consumer, reason };
    await this.redis.publish(this.keys.events, JSON.stringify(event));
  }

  /** Why this consumer should stop, or null: the run joined, or someone cancelled it (or everyone). */
  async cancelReason(consumerId: string): Promise<string | null> {
    const [state, mine, all] = await Promise.all([
      this.redis.hget(this.keys.meta, 'state'),
      this.redis.sismember(this.keys.cancel, consumerId),
      this.redis.sismember(this.keys.cancel, '*'),
    ]);
    if (state === 'joined') return 'run joined';
    if (mine === 1 || all === 1) return 'cancel requested';
    return null;
  }
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
    if (v.type === 'cancel' && typeof v.consumer === 'string')
      return {
        type: 'cancel',
        consumer: v.consumer,
        reason: typeof v.reason === 'string' ? v.reason : 'cancel',
      };
  } catch {
    // not ours
  }
  return null;
}
