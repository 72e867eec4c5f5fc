import type { RedisClient } from '../redis.js';
import { runIndexKey, runKeys, type RunKeys } from '../keys.js';
import { luaScript } from './lua-script.js';
import {
  ackAddedLua,
  createRunLua,
  heartbeatProducerLua,
  producerDoneLua,
  recordFinishedLua,
  registerProducerLua,
  tryJoinLua,
} from './scripts.js';
import type { ConsumerRecord, FinishOutcome, JoinAttempt, JoinReason, ProducerState } from './types.js';

const scripts = {
  createRun: luaScript(createRunLua),
  registerProducer: luaScript(registerProducerLua),
  heartbeatProducer: luaScript(heartbeatProducerLua),
  ackAdded: luaScript(ackAddedLua),
  producerDone: luaScript(producerDoneLua),
  recordFinished: luaScript(recordFinishedLua),
  tryJoin: luaScript(tryJoinLua),
};

/** Open jobs the join check will inspect one by one for a consumer that died after finishing them. */
const RECONCILE_LIMIT = 1_000;

/** A run-protocol refusal a person can act on (the message says what to do). */
export class RunError extends Error {
  constructor(
    readonly code: 'joined' | 'full' | 'finished' | 'expected-mismatch' | 'no-run' | 'no-producer',
    message: string,
  ) {
    super(message);
    this.name = 'RunError';
  }
}

export type RunEvent =
  { type: 'joined'; joinedAt: number } | { type: 'cancel'; consumer: string; reason: string };

/**
 * One run's state in Redis: producers, acknowledged jobs, consumers, the join and cancellation.
 * Stateless apart from the names it was built with, so any number of processes can share a run.
 */
export class RunStore {
  readonly keys: RunKeys;
  private readonly scriptKeys: string[];
  private readonly commonArgs: string[];

  constructor(
    private readonly redis: RedisClient,
    readonly queue: string,
    readonly runId: string,
  ) {
    this.keys = runKeys(queue, runId);
    const k = this.keys;
    this.scriptKeys = [k.meta, k.producers, k.leases, k.open, k.early, runIndexKey(queue), k.keyed];
    this.commonArgs = [k.inflightPrefix, k.jobPrefix, k.events];
  }

  private call(script: keyof typeof scripts, ...args: (string | number)[]): Promise<unknown> {
    return scripts[script](this.redis, this.scriptKeys, [...this.commonArgs, ...args]).catch(
      (err: unknown) => {
        throw this.translate(err);
      },
    );
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
    return (await this.call('createRun', this.runId, expectedProducers, leaseMs)) === 1;
  }

  async exists(): Promise<boolean> {
    return (await this.redis.exists(this.keys.meta)) === 1;
  }

  async registerProducer(id: string, info: { host: string; pid: number }, leaseMs: number): Promise<void> {
    await this.call('registerProducer', id, JSON.stringify({ id, ...info }), leaseMs);
  }

  /** Renews the lease; returns the producer's state ('lost' means the run gave up on it). */
  async heartbeatProducer(id: string, leaseMs: number): Promise<ProducerState | 'missing'> {
    return (await this.call('heartbeatProducer', id, leaseMs)) as ProducerState | 'missing';
  }

  /** Records ids about to be sent, so a producer that dies mid-add can be settled later. */
  async markInflight(producerId: string, jobIds: readonly string[]): Promise<void> {
    if (jobIds.length > 0) await this.redis.sadd(this.keys.inflightPrefix + producerId, ...jobIds);
  }

  /**
   * Ids whose add Redis acknowledged: from now on they hold the join back until finished. Ids put
   * with an idempotency key are named in `keyedIds` too, so the run remembers the key for good.
   */
  async ackAdded(
    producerId: string,
    jobIds: readonly string[],
    keyedIds: ReadonlySet<string> = new Set(),
  ): Promise<number> {
    if (jobIds.length === 0) return 0;
    const args = jobIds.map((id) => (keyedIds.has(id) ? `k:${id}` : id));
    return Number(await this.call('ackAdded', producerId, ...args));
  }

  /** Of these keyed job ids, the ones this run already accepted (their key was used before). */
  async acceptedKeyed(jobIds: readonly string[]): Promise<Set<string>> {
    if (jobIds.length === 0) return new Set();
    const seen = await this.redis.smismember(this.keys.keyed, ...jobIds);
    return new Set(jobIds.filter((_, i) => seen[i] === 1));
  }

  /** `produced`: how many acknowledgements the producer itself counted (checked against the run's). */
  async producerDone(producerId: string, produced = 0): Promise<{ state: ProducerState; join: JoinAttempt }> {
    const [state, reason, detail] = (await this.call(
      'producerDone',
      producerId,
      RECONCILE_LIMIT,
      produced,
    )) as [ProducerState, JoinReason, string];
    return { state, join: toAttempt(reason, detail) };
  }

  async recordFinished(
    entries: readonly { id: string; outcome: FinishOutcome }[],
  ): Promise<{ counted: number; duplicates: number; join: JoinAttempt }> {
    const args = entries.flatMap((e) => [e.id, e.outcome]);
    const [counted, duplicates, reason, detail] = (await this.call(
      'recordFinished',
      RECONCILE_LIMIT,
      ...args,
    )) as [number, number, JoinReason, string];
    return { counted, duplicates, join: toAttempt(reason, detail) };
  }

  async tryJoin(): Promise<JoinAttempt> {
    const [reason, detail] = (await this.call('tryJoin', RECONCILE_LIMIT)) as [JoinReason, string];
    return toAttempt(reason, detail);
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
