import type { RedisClient } from '../redis.js';
import { callbackJobId, queueShards, runIndexKey, runKeys, shardRunKeys } from '../keys.js';
import type { CallbackSpec, ConsumerRecord, ConsumerState, ProducerRecord, ProducerState } from './types.js';

export type RunStatus = {
  /** Every job id of this creation of the run begins with it (`<run>+<n>`; see keys.ts). Null before the run exists. */
  idPrefix: string | null;
  runId: string;
  queue: string;
  createdAt: string;
  /** Redis clock when this status was read (ms). */
  observedAt: number;
  join: {
    /** abandoned: it waited longer than its abandon time for producers that never registered. */
    state: 'pending' | 'joined' | 'abandoned';
    joinedAt: string | null;
    /** When the run was abandoned (it will never join; its keys expire after its retention), or null. */
    abandonedAt: string | null;
    /** Why it was abandoned, as a sentence ("waited 7 d for 1 of 3 producers, which never registered"). */
    abandonReason: string | null;
    /** When someone cancelled the run (it joins once its active jobs are aborted), or null. */
    cancelledAt: string | null;
    /** Who cancelled it ("the dashboard (from 10.0.0.5)", "conveyor cancel"), when they said; else null. */
    cancelledBy: string | null;
    /** Why, when they said; else null. */
    cancelReason: string | null;
    /** Jobs not yet started that the cancel removed at once (the rest were aborted, or removed later); null before a cancel. */
    cancelRemoved: number | null;
    /** What the join still waits for, when pending. */
    waitingFor:
      | 'run-not-created'
      | 'producers-missing'
      | 'producers-running'
      | 'producers-settling'
      | 'jobs-unfinished'
      | 'join-check'
      | null;
    /** The counts recorded in the same step that joined the run. */
    totals: {
      produced: number;
      completed: number;
      failed: number;
      removed: number;
      /** Absent in totals recorded before cancellation existed. */
      cancelled?: number;
      lostProducers: number;
    } | null;
  };
  jobs: {
    produced: number;
    completed: number;
    failed: number;
    /** Acknowledged jobs not yet completed or failed (waiting, active, delayed, retrying...). */
    unfinished: number;
    /** Acknowledged jobs removed from the queue by hand before finishing. */
    removed: number;
    /** Jobs cancelled (one by one, or with their run): never started, or aborted while running. */
    cancelled: number;
    /** Finish reports ignored because the job was already counted (redelivery after a crash). */
    duplicateFinishes: number;
    /** Jobs counted by the join check because their consumer died before reporting them. */
    reconciled: number;
    /** Acknowledgements producers saw that Redis no longer holds (a restart rolled writes back). */
    lostAcks: number;
    /** Counted jobs put back to work (a retry from Bull Board or job.retry()) and re-opened in the run. */
    reopened: number;
    /** Jobs put back to work after the run joined: they ran outside its totals. */
    afterJoin: number;
  };
  producers: {
    expected: number;
    registered: number;
    running: number;
    done: number;
    lost: number;
    list: (ProducerRecord & { state: ProducerState })[];
  };
  consumers: (Omit<ConsumerRecord, 'state'> & { state: ConsumerState | 'lost' })[];
  /** The run on each shard of the queue (one entry when the queue is not sharded). */
  shards: ShardStatus[];
  /**
   * pending, then joined; done once every join callback finished (at once when it has none or they
   * were skipped). abandoned instead of joined when it waited too long for producers that never came.
   */
  state: 'pending' | 'joined' | 'done' | 'abandoned';
  /** The run whose callback started this one (`afterRun` when it was created), if any. */
  afterRun: string | null;
  /** The run created with this one as its `afterRun` (on the same queue), if any. */
  nextRun: string | null;
  /** The join callbacks the run was created with, and where each is. */
  callbacks: {
    name: string;
    type: string;
    when: 'always' | 'success';
    /** waiting (for the join), pending (due, not yet enqueued), delivered, started, completed, failed, skipped. */
    state: string;
    jobId: string;
  }[];
};

export type ShardStatus = {
  index: number;
  /** The shard's BullMQ queue name. */
  name: string;
  produced: number;
  completed: number;
  failed: number;
  cancelled: number;
  unfinished: number;
  /** True once every producer finished and no job of the run is unfinished here. */
  closed: boolean;
};

const COUNTERS = [
  'produced',
  'completed',
  'failed',
  'removed',
  'cancelled',
  'duplicateFinishes',
  'reconciled',
  'lostAcks',
  'reopened',
  'afterJoin',
] as const;
type Counters = Record<(typeof COUNTERS)[number], number>;

const num = (v: string | undefined) => (v === undefined ? 0 : Number(v));
const iso = (ms: string | undefined) => (ms === undefined ? null : new Date(Number(ms)).toISOString());

/** A stretch of time for people: seconds, minutes, hours or days, rounded. */
function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 120 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86_400)} d`;
}

/** The latest run ids of a queue, newest first. */
export async function listRuns(redis: RedisClient, queue: string, limit = 50): Promise<string[]> {
  return redis.zrevrange(runIndexKey(queue), 0, limit - 1);
}

/** What one read of the run's keys returns. */
type RunReads = Awaited<ReturnType<typeof readRunRecord>> & { shards: ShardRead[] };
type ShardRead = Awaited<ReturnType<typeof readShards>>[number];

/**
 * Reads a run's state for people and tools. Read-only: a producer or consumer whose heartbeat is older
 * than `leaseMs` is shown as lost here, while the run itself records a producer as lost at its next join check.
 */
export async function readRunStatus(
  redis: RedisClient,
  queue: string,
  runId: string,
  leaseMs: number,
): Promise<RunStatus | null> {
  const run = await readRunRecord(redis, queue, runId);
  // Consumers started before any producer created the run wait in it already: show them.
  if (run.meta.expectedProducers === undefined && run.consumersRaw.length === 0) return null;
  const shards = await readShards(redis, queue, runId, num(run.meta.shards) || 1);
  return runStatusOf(queue, runId, leaseMs, { ...run, shards });
}

/** The run's hashes, sets and heartbeats as Redis holds them, and Redis's clock. */
async function readRunRecord(redis: RedisClient, queue: string, runId: string) {
  const k = runKeys(queue, runId);
  const [meta, producersRaw, consumersRaw, beatsRaw, unsettled, time] = await Promise.all([
    redis.hgetall(k.meta),
    redis.hvals(k.producers),
    redis.hvals(k.consumers),
    redis.zrange(k.beats, '0', '-1', 'WITHSCORES'),
    redis.scard(k.unsettled),
    redis.time(),
  ]);
  const now = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
  return { meta, producersRaw, consumersRaw, beatsRaw, unsettled, now };
}

/** Each shard's counts for the run, its per-producer counts and its unfinished jobs. */
async function readShards(redis: RedisClient, queue: string, runId: string, shards: number) {
  return Promise.all(
    queueShards(queue, shards).map(async (shard) => {
      const sk = shardRunKeys(shard, runId);
      const [smeta, producedBy, open] = await Promise.all([
        redis.hgetall(sk.meta),
        redis.hgetall(sk.producedBy),
        redis.scard(sk.open),
      ]);
      return { shard, smeta, producedBy, open };
    }),
  );
}

/** The status built from one read of the run's keys. */
function runStatusOf(queue: string, runId: string, leaseMs: number, reads: RunReads): RunStatus {
  const { meta, now, shards } = reads;
  const joined = meta.state === 'joined';
  const abandoned = meta.state === 'abandoned';
  const total = (pick: (r: ShardRead) => number) => shards.reduce((n, r) => n + pick(r), 0);
  const counters = Object.fromEntries(COUNTERS.map((c) => [c, total((r) => num(r.smeta[c]))])) as Counters;
  const producers = producersOf(reads, leaseMs);
  const count = (s: ProducerState) => producers.filter((p) => p.state === s).length;
  const expected = num(meta.expectedProducers);
  const callbacks = callbacksOf(meta, runId);
  const settled = callbacks.every((c) => ['completed', 'failed', 'skipped'].includes(c.state));
  return {
    runId,
    queue,
    idPrefix: meta.idPrefix ?? null,
    state: abandoned ? 'abandoned' : !joined ? 'pending' : settled ? 'done' : 'joined',
    afterRun: meta.afterRun ?? null,
    nextRun: meta.nextRun ?? null,
    callbacks,
    createdAt: iso(meta.createdAt) ?? '',
    observedAt: now,
    join: joinOf(
      reads,
      count('running'),
      producers.length,
      total((r) => r.open),
    ),
    jobs: {
      ...counters,
      unfinished: total((r) => r.open),
    },
    producers: {
      expected,
      registered: producers.length,
      running: count('running'),
      done: count('done'),
      lost: count('lost'),
      list: producers,
    },
    consumers: consumersOf(reads, leaseMs),
    shards: shards.map(({ shard, smeta, open }) => ({
      index: shard.index,
      name: shard.name,
      produced: num(smeta.produced),
      completed: num(smeta.completed),
      failed: num(smeta.failed),
      cancelled: num(smeta.cancelled),
      unfinished: open,
      closed: smeta.closedAt !== undefined,
    })),
  };
}

/** The run's producers, oldest first, each with its count over the shards and `lost` past its lease. */
function producersOf({ producersRaw, shards, now }: RunReads, leaseMs: number) {
  const total = (pick: (r: ShardRead) => number) => shards.reduce((n, r) => n + pick(r), 0);
  // A producer's count over its incarnations (`<id>`, `<id>~2`, ...).
  const producedBy = (p: ProducerRecord) =>
    Array.from({ length: p.incarnation ?? 1 }, (_, i) => (i === 0 ? p.id : `${p.id}~${i + 1}`)).reduce(
      (n, instance) => n + total((r) => num(r.producedBy[instance])),
      0,
    );
  return (
    producersRaw
      .map((raw) => JSON.parse(raw) as ProducerRecord)
      // The shards' count is the run's truth (it includes what a lost producer had in flight).
      .map((p) => ({ ...p, produced: producedBy(p) }))
      .map((p) =>
        p.state === 'running' && now - p.heartbeatAt > leaseMs ? { ...p, state: 'lost' as const } : p,
      )
      .sort((a, b) => a.startedAt - b.startedAt)
  );
}

/** The run's consumers, oldest first, `lost` once their heartbeat is older than the lease. */
function consumersOf({ consumersRaw, beatsRaw, now }: RunReads, leaseMs: number): RunStatus['consumers'] {
  // Consumers' heartbeats are stamped with Redis's clock, so staleness never depends on a host's clock.
  const beats = new Map<string, number>();
  for (let i = 0; i + 1 < beatsRaw.length; i += 2) beats.set(beatsRaw[i]!, Number(beatsRaw[i + 1]));
  return consumersRaw
    .map((raw) => JSON.parse(raw) as ConsumerRecord)
    .map((c) => ({ ...c, heartbeatAt: beats.get(c.id) ?? c.heartbeatAt }))
    .map((c) => {
      const ended = c.state === 'cancelled' || c.state === 'stopped';
      return !ended && now - c.heartbeatAt > leaseMs ? { ...c, state: 'lost' as const } : c;
    })
    .sort((a, b) => a.startedAt - b.startedAt);
}

/** Where the join stands: joined, abandoned (and why), cancelled (by whom), or what it waits for. */
function joinOf(
  { meta, unsettled }: RunReads,
  running: number,
  registered: number,
  open: number,
): RunStatus['join'] {
  const joined = meta.state === 'joined';
  const abandoned = meta.state === 'abandoned';
  const expected = num(meta.expectedProducers);
  let waitingFor: RunStatus['join']['waitingFor'] = null;
  if (!joined && !abandoned) {
    if (meta.expectedProducers === undefined) waitingFor = 'run-not-created';
    else if (registered < expected && meta.cancelledAt === undefined) waitingFor = 'producers-missing';
    else if (running > 0) waitingFor = 'producers-running';
    else if (unsettled > 0) waitingFor = 'producers-settling';
    else if (open > 0) waitingFor = 'jobs-unfinished';
    // Everything is finished: the next join check (any process's heartbeat) joins the run.
    else waitingFor = 'join-check';
  }
  return {
    state: joined ? 'joined' : abandoned ? 'abandoned' : 'pending',
    joinedAt: iso(meta.joinedAt),
    abandonedAt: iso(meta.abandonedAt),
    abandonReason: abandoned
      ? `waited ${duration(num(meta.abandonedAfterMs))} for ${num(meta.abandonedMissing)} of ${expected} producers, which never registered`
      : null,
    cancelledAt: iso(meta.cancelledAt),
    cancelledBy: meta.cancelledBy ?? null,
    cancelReason: meta.cancelReason ?? null,
    cancelRemoved: meta.cancelRemoved === undefined ? null : Number(meta.cancelRemoved),
    waitingFor,
    totals: meta.totalsAtJoin ? (JSON.parse(meta.totalsAtJoin) as RunStatus['join']['totals']) : null,
  };
}

/** The join callbacks the run was created with, each with where it is. */
function callbacksOf(meta: Record<string, string>, runId: string): RunStatus['callbacks'] {
  return (meta.callbacks ? (JSON.parse(meta.callbacks) as CallbackSpec[]) : []).map((c) => ({
    name: c.name,
    type: c.type,
    when: c.when,
    state: meta[`cb:${c.name}`] ?? 'waiting',
    jobId: callbackJobId(meta.idPrefix ?? runId, c.name),
  }));
}

/** A few lines for a person at a terminal. */
export function formatRunStatus(s: RunStatus): string {
  const j = s.jobs;
  const p = s.producers;
  const join =
    s.join.state === 'joined'
      ? `joined at ${s.join.joinedAt ?? '?'}${s.join.cancelledAt ? ` (cancelled at ${s.join.cancelledAt})` : ''}` +
        // The same word as status --list: the callbacks' progress is said beside it.
        (s.callbacks.length > 0 ? `; callbacks ${s.state === 'done' ? 'done' : 'running'}` : '')
      : s.join.state === 'abandoned'
        ? `abandoned at ${s.join.abandonedAt ?? '?'}: ${s.join.abandonReason ?? '?'}; it will never join`
        : `${s.join.cancelledAt ? `cancelling since ${s.join.cancelledAt}` : 'pending'} (waiting for ${s.join.waitingFor ?? '?'})`;
  const stoppedEarly = p.list.filter((x) => x.state === 'done' && x.stoppedEarly).length;
  const consumers =
    s.consumers
      .map((c) => {
        const others = Object.entries(c.runs ?? {}).filter(([run]) => run !== s.runId);
        const served = others.map(([run, n]) => `${run}: ${n} job${n === 1 ? '' : 's'}`).join(', ');
        const runaway = c.runaway?.length
          ? ` (${c.runaway.length} handler${c.runaway.length === 1 ? '' : 's'} still running after its job ended: ${c.runaway.join(', ')})`
          : '';
        return `${c.id}=${c.state}${served ? ` (also served ${served})` : ''}${runaway}`;
      })
      .join(', ') || 'none';
  return [
    `run ${s.runId} on queue ${s.queue}: ${join}`,
    `  jobs       produced ${j.produced}, completed ${j.completed}, failed ${j.failed}, unfinished ${j.unfinished}` +
      (j.cancelled ? `, cancelled ${j.cancelled}` : '') +
      (j.removed ? `, removed ${j.removed}` : '') +
      (j.lostAcks ? `, LOST ${j.lostAcks} acknowledged (Redis rolled back)` : '') +
      (j.reopened ? `, re-opened ${j.reopened}` : '') +
      (j.afterJoin ? `, ${j.afterJoin} put back to work after the join` : ''),
    `  producers  ${p.registered}/${p.expected} registered: ${p.running} running, ${p.done} done` +
      (stoppedEarly
        ? ` (${stoppedEarly} stopped early${s.join.cancelledAt ? ': the run was cancelled' : ' by a signal'})`
        : '') +
      `, ${p.lost} lost`,
    `  consumers  ${consumers}`,
    ...(s.afterRun ? [`  after run  ${s.afterRun}`] : []),
    ...(s.nextRun ? [`  next run   ${s.nextRun}`] : []),
    ...(s.callbacks.length > 0
      ? [`  callbacks  ${s.callbacks.map((c) => `${c.name} (${c.type}) ${c.state}`).join(', ')}`]
      : []),
    ...(s.shards.length > 1
      ? s.shards.map(
          (h) =>
            `  shard ${h.index}    ${h.name}: produced ${h.produced}, completed ${h.completed}, failed ${h.failed}, cancelled ${h.cancelled}, unfinished ${h.unfinished}${h.closed ? ', closed' : ''}`,
        )
      : []),
  ].join('\n');
}

const clock = (iso: string | null) => (iso ? iso.slice(0, 19).replace('T', ' ') : '');

/** `status --list`: one line per run, newest first, with its state, counts and times (UTC). */
export function formatRunList(runs: readonly RunStatus[], queue: string): string {
  if (runs.length === 0) return `no runs on queue "${queue}"`;
  const rows = runs.map((s) => {
    const j = s.jobs;
    const joined = s.join.cancelledAt ? 'joined (cancelled)' : 'joined';
    const pending = s.join.cancelledAt ? 'cancelling' : 'pending';
    const state =
      s.join.state === 'joined'
        ? joined
        : s.join.state === 'abandoned'
          ? 'abandoned'
          : `${pending} (${s.join.waitingFor ?? '?'})`;
    const took =
      s.join.joinedAt && s.createdAt
        ? `${((Date.parse(s.join.joinedAt) - Date.parse(s.createdAt)) / 1000).toFixed(1)} s`
        : '';
    return [
      s.runId,
      state,
      `${j.produced}/${j.completed}/${j.failed}/${j.unfinished}`,
      `${s.producers.done}/${s.producers.expected}`,
      clock(s.createdAt),
      clock(s.join.joinedAt),
      took,
    ];
  });
  const header = [
    'RUN',
    'STATE',
    'PROD/DONE/FAIL/OPEN',
    'PRODUCERS',
    'CREATED (UTC)',
    'JOINED (UTC)',
    'TOOK',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}
