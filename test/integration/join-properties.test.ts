import { fc, test } from '@fast-check/vitest';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { putJobId, queueShards, runKeys } from '../../shared/keys.js';
import { jobOptions, openQueues, readJobData, type JobData } from '../../shared/queue.js';
import { RunError, RunStore, type StoredJob } from '../../shared/run/run-store.js';
import { readRunStatus } from '../../shared/run/status.js';
import type { JoinAttempt } from '../../shared/run/types.js';
import { finishInBullMQ } from '../helpers/finish-jobs.js';
import { connect, dropQueue, testQueue } from '../helpers/redis.js';

/**
 * The join protocol against a real Redis under random interleavings of what producers, consumers,
 * people, the network and failures do, with the invariants checked after every step:
 *   - the run joins at most once;
 *   - the run's `produced` always equals the puts it stored, each counted once, whatever the order
 *     in which batches reach Redis and however often they are sent;
 *   - a refused put (a fenced instance) stores nothing; a fenced instance's resend of a put it stored
 *     before the fence is answered stored;
 *   - once joined, nothing the run stored is left open, the totals add up, and each job is in the
 *     bucket its history says (completed, failed, cancelled, removed), exactly;
 *   - a job put back to work (with or without fresh attempt counters) is re-opened in its pending
 *     run, or is work after the join once its run joined (a shard that closed before the run
 *     joined opens again);
 *   - a run id used again after its retention starts clean: the earlier creation's jobs (still in
 *     BullMQ) are neither counted nor cancelled in the new one;
 *   - a run whose producers all ended and whose jobs all finished joins (checked at the end of each case).
 * Two shards, two producer slots. JOIN_PROPERTY_RUNS sets the number of cases (CI runs 200); a
 * failure prints fast-check's seed and the shrunk list of steps.
 */

const RUNS = Number(process.env.JOIN_PROPERTY_RUNS ?? 200);
// Replays a reported failure: JOIN_PROPERTY_SEED=<seed> JOIN_PROPERTY_PATH=<path> (both printed with it).
const REPLAY = process.env.JOIN_PROPERTY_SEED
  ? { seed: Number(process.env.JOIN_PROPERTY_SEED), path: process.env.JOIN_PROPERTY_PATH, endOnFailure: true }
  : {};
const SLOTS = 2;
const SHARDS = 2;
/** Run ids are used again every this many cases, after the earlier creation's retention ran out. */
const RUN_IDS = 3;
const LEASE_MS = 60_000;
/** conveyor trims counted finished jobs to this many per shard, so trimming happens in most cases. */
const KEEP = 2;

type Outcome = 'completed' | 'failed' | 'cancelled';
type Bucket = Outcome | 'removed';

type JobModel = {
  id: string;
  shard: number;
  instance: Instance;
  /** waiting: in BullMQ, not finished (waiting, or held by a consumer); gone: deleted before it finished. */
  state: 'waiting' | 'finished' | 'gone';
  /** The outcome of its current finish. */
  outcome?: Outcome;
  /** A finish report not yet sent (a consumer's batch on its way), with the outcome it carries. */
  pendingReport?: Outcome;
  /** Deleted by a cancel (counted cancelled) rather than by hand. */
  goneByCancel: boolean;
  /** Someone asked to cancel it while it was not finished. */
  cancelRequested: boolean;
  /** Put back to work after its run joined: its bucket was fixed then. */
  frozen?: Bucket;
  /** Deleted by hand while an earlier attempt's report was on its way, which then counted it. */
  countedByLateReport?: Outcome;
};

type Instance = {
  id: string;
  slot: number;
  incarnation: number;
  seq: number;
  state: 'running' | 'done' | 'lost' | 'superseded';
  /** Every batch it sent, to send again (as ioredis does when a reply was lost to a reconnect). */
  sent: { shard: number; batch: StoredJob[] }[];
  acks: number[];
};

const PUT_OPTIONS = JSON.stringify(
  jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: KEEP, keepFailed: KEEP }),
);
const slot = fc.nat(SLOTS - 1);
const shard = fc.nat(SHARDS - 1);
// Weighted towards the steady state (put, finish, report, check), with failures mixed in.
const step = fc.oneof(
  {
    weight: 5,
    arbitrary: fc.record({ t: fc.constant('put' as const), slot, shard, n: fc.integer({ min: 1, max: 3 }) }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('resend' as const), slot, pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('overtaken' as const), slot, shard }) },
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('finish' as const),
      pick: fc.nat(),
      failed: fc.boolean(),
      report: fc.boolean(),
    }),
  },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('report' as const), pick: fc.nat() }) },
  {
    weight: 2,
    arbitrary: fc.record({ t: fc.constant('retry' as const), pick: fc.nat(), reset: fc.boolean() }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('removeByHand' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('expire' as const), slot }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('restart' as const), slot }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('done' as const), slot }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('check' as const) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('cancelWaiting' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('cancelActive' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('cancelAny' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('cancelRun' as const) }) },
  {
    weight: 1,
    arbitrary: fc.record({ t: fc.constant('stale' as const), pick: fc.nat(), cancel: fc.boolean() }),
  },
);
type Step = typeof step extends fc.Arbitrary<infer S> ? S : never;

describe('join protocol properties (real Redis)', () => {
  let redis: Redis;
  let queue: string;
  let queues: Queue<JobData>[];
  let caseNo = 0;
  /** Per run id, the job ids of its previous creation (still in BullMQ after the run expired). */
  const earlier = new Map<string, string[]>();

  beforeAll(() => {
    redis = connect();
    queue = testQueue();
    queues = openQueues(queue, SHARDS, redis);
  });
  afterAll(async () => {
    await Promise.all(queues.map((q) => q.close()));
    await dropQueue(redis, queue);
    redis.disconnect();
  });

  /** The run's retention ran out: its own keys expire; BullMQ's jobs of it stay. */
  const expireRun = async (runId: string) => {
    const patterns = [
      `${runKeys(queue, runId).meta.slice(0, -'meta'.length)}*`,
      ...queueShards(queue, SHARDS).map((s) => `${s.prefix}:${s.name}:conveyor:run:${runId}:*`),
    ];
    for (const pattern of patterns) {
      const keys = await redis.keys(pattern);
      if (keys.length) await redis.del(...keys);
    }
  };

  test.prop([fc.array(step, { minLength: 1, maxLength: 60 })], { numRuns: RUNS, ...REPLAY })(
    'joins at most once, stores and counts each put once, and joins once everything ended',
    async (steps) => {
      const runId = `prop${caseNo++ % RUN_IDS}`;
      await expireRun(runId);
      const stale = earlier.get(runId) ?? [];
      const run = new RunStore(redis, queue, runId, SHARDS, { reconcileGraceMs: 0, reconcileIntervalMs: 0 });
      const k = run.shardKeys;
      const jobKey = (j: { id: string; shard: number }) => k[j.shard]!.jobPrefix + j.id;
      await run.create(SLOTS, LEASE_MS, 0, [], '', null, { completed: KEEP, failed: KEEP });
      const prefix = await run.idPrefix();
      expect(
        stale.some((id) => id.startsWith(`${prefix}+`)),
        'a new creation reuses ids',
      ).toBe(false);
      const jobs: JobModel[] = [];
      const instances: Instance[] = [];
      const current: Instance[] = [];
      for (let s = 0; s < SLOTS; s++) {
        const { incarnation, instance } = await run.registerProducer(
          `p${s}`,
          { host: 'h', pid: 1 },
          LEASE_MS,
        );
        const inst = newInstance(instance, s, incarnation);
        instances.push(inst);
        current.push(inst);
      }
      let joinedNow = 0;
      let joined = false;
      let totalsAtJoin: unknown;
      let runCancelled = false;
      const note = (a: JoinAttempt) => {
        if (a.joinedNow) joinedNow++;
      };
      const pick = <T>(list: T[], n: number): T | undefined =>
        list.length ? list[n % list.length] : undefined;
      const isFenced = async (inst: Instance, s: number) =>
        (await redis.sismember(k[s]!.fenced, inst.id)) === 1;

      /** Sends a batch as the producer's put does; checks it was stored whole, or refused writing nothing. */
      const send = async (inst: Instance, s: number, batch: StoredJob[], again: boolean): Promise<void> => {
        const fenced = await isFenced(inst, s);
        try {
          const r = await run.putJobs(s, inst.id, PUT_OPTIONS, batch);
          // A fenced instance's send is answered only when it stored nothing new (sent before the fence).
          expect(fenced && !again, `new put of fenced ${inst.id} accepted`).toBe(false);
          expect(
            r,
            again ? 'a put sent again added or counted' : 'a put stored less than it carried',
          ).toEqual(
            again
              ? { acknowledged: 0, storedBefore: batch.length }
              : { acknowledged: batch.length, storedBefore: 0 },
          );
          if (!again) {
            inst.acks[s]! += batch.length;
            inst.sent.push({ shard: s, batch });
            for (const { id } of batch) jobs.push(newJob(id, s, inst));
          }
        } catch (err) {
          expect((err as RunError).code, String(err)).toBe('fenced');
          expect(fenced && !again, `put of live ${inst.id}, or a resend of a stored one, refused`).toBe(true);
          if (!again)
            for (const { id } of batch)
              expect(await redis.exists(jobKey({ id, shard: s })), `${id} stored`).toBe(0);
        }
      };
      const batchOf = (inst: Instance, n: number): StoredJob[] =>
        Array.from({ length: n }, (_, i) => {
          const seq = inst.seq++;
          const data = JSON.stringify({ run: runId, producer: inst.id, payload: { value: i, ms: 0 } });
          return { id: putJobId(prefix, inst.id, seq), seq, name: 'sleep', data };
        });

      const finish = async (job: JobModel, outcome: Outcome, report: boolean) => {
        await finishInBullMQ(redis, run, job.shard, [job.id], outcome);
        job.state = 'finished';
        job.outcome = outcome;
        job.pendingReport = outcome;
        if (report) await reportFinish(job);
      };
      const reportFinish = async (job: JobModel) => {
        const outcome = job.pendingReport;
        if (!outcome) return;
        delete job.pendingReport;
        const r = await run.recordFinished(job.shard, [{ id: job.id, outcome }]);
        note(r.join);
        // A report that arrives after its job was put back to work counts nothing: the job's new
        // attempt will be reported.
        if (job.state === 'waiting') expect(r.counted, `stale report of retried ${job.id} counted`).toBe(0);
        // Deleted by hand after a retry, before this report of its earlier attempt arrived: counted as
        // the report says unless the join check had counted it removed first.
        if (job.state === 'gone' && !job.goneByCancel && r.counted === 1) job.countedByLateReport = outcome;
      };
      /** A job removed by a cancel (one by one, or swept out of the cancelled run by any join check). */
      const noteCancelledRemoval = (job: JobModel) => {
        job.state = 'gone';
        job.goneByCancel = true;
        delete job.pendingReport;
      };
      /** A cancelled run's join checks remove its waiting jobs: learn which, as Redis says. */
      const observeSweeps = async () => {
        if (!runCancelled) return;
        for (const job of jobs.filter((j) => j.state === 'waiting')) {
          if ((await redis.exists(jobKey(job))) === 1) continue;
          expect(
            await redis.sismember(k[job.shard]!.cancelled, job.id),
            `${job.id} vanished without a cancel`,
          ).toBe(1);
          noteCancelledRemoval(job);
        }
      };
      const bucketOf = (j: JobModel): Bucket => {
        if (j.frozen) return j.frozen;
        if (j.countedByLateReport) return j.countedByLateReport;
        if (j.state === 'gone') return j.goneByCancel || j.cancelRequested ? 'cancelled' : 'removed';
        return j.outcome!;
      };

      const invariants = async (label: string) => {
        await observeSweeps();
        expect(joinedNow, `${label}: joined more than once`).toBeLessThanOrEqual(1);
        const s = await readRunStatus(redis, queue, runId, LEASE_MS);
        expect(s?.jobs.produced, `${label}: produced vs stored puts`).toBe(jobs.length);
        joined = s?.join.state === 'joined';
        if (!joined) return;
        expect(joinedNow, `${label}: joined without anyone seeing joinedNow`).toBe(1);
        // The totals are fixed at the join; what happens after (work after the join) never moves them.
        if (totalsAtJoin !== undefined) {
          expect(s!.join.totals, `${label}: totals changed after the join`).toEqual(totalsAtJoin);
          return;
        }
        totalsAtJoin = s!.join.totals;
        const open = jobs.filter((j) => !j.frozen && j.state === 'waiting');
        expect(
          open.map((j) => j.id),
          `${label}: stored jobs left unfinished at the join`,
        ).toEqual([]);
        const t = s!.join.totals!;
        expect(t.completed + t.failed + t.removed + t.cancelled!, `${label}: totals add up`).toBe(t.produced);
        const expected = { completed: 0, failed: 0, cancelled: 0, removed: 0 };
        for (const j of jobs) expected[bucketOf(j)]++;
        expect(
          { completed: t.completed, failed: t.failed, cancelled: t.cancelled, removed: t.removed },
          label,
        ).toEqual(expected);
      };

      const apply = async (st: Step) => {
        switch (st.t) {
          case 'put': {
            const inst = current[st.slot]!;
            await send(inst, st.shard, batchOf(inst, st.n), false);
            return;
          }
          case 'resend': {
            const inst = current[st.slot]!;
            const earlierPut = pick(inst.sent, st.pick);
            if (!earlierPut) return;
            await send(inst, earlierPut.shard, earlierPut.batch, true);
            return;
          }
          case 'overtaken': {
            // Two batches of one instance reach Redis in the wrong order (a NOSCRIPT fallback overtaken).
            const inst = current[st.slot]!;
            const first = batchOf(inst, 2);
            const second = batchOf(inst, 2);
            await send(inst, st.shard, second, false);
            await send(inst, st.shard, first, false);
            return;
          }
          case 'finish': {
            const job = pick(
              jobs.filter((j) => j.state === 'waiting'),
              st.pick,
            );
            if (job) await finish(job, st.failed ? 'failed' : 'completed', st.report);
            return;
          }
          case 'report': {
            const job = pick(
              jobs.filter((j) => j.pendingReport),
              st.pick,
            );
            if (job) await reportFinish(job);
            return;
          }
          case 'removeByHand': {
            const job = pick(
              jobs.filter((j) => j.state === 'waiting'),
              st.pick,
            );
            if (!job) return;
            await queues[job.shard]!.remove(job.id);
            job.state = 'gone';
            return;
          }
          case 'retry': {
            // BullMQ's retry of a finished job still in its finished set (conveyor may have trimmed it).
            const job = pick(
              jobs.filter((j) => j.state === 'finished'),
              st.pick,
            );
            if (!job) return;
            const set = job.outcome === 'completed' ? k[job.shard]!.completed : k[job.shard]!.failed;
            if ((await redis.zscore(set, job.id)) === null) return;
            const wasCounted = (await redis.hget(jobKey(job), 'cvAcct')) !== null;
            await redis.hdel(jobKey(job), 'finishedOn', 'processedOn', 'failedReason');
            if (st.reset) await redis.hset(jobKey(job), 'atm', 0, 'ats', 0);
            await redis.zrem(set, job.id);
            await redis.lpush(`${k[job.shard]!.jobPrefix}wait`, job.id);
            // The consumer that takes it asks the run when the run marked it counted (never by counters).
            const data = readJobData(JSON.parse((await redis.hget(jobKey(job), 'data'))!));
            // (the mark stays once set: a job counted, re-opened and retried again asks again, and is open)
            if (wasCounted) expect(data?.counted, `${job.id}: counted but not marked`).toBe(true);
            if (data?.counted) {
              const r = await run.reopen(job.shard, job.id);
              expect(r, `reopen of ${job.id}`).toBe(
                !wasCounted ? 'open' : joined ? 'after-join' : 'reopened',
              );
              if (r === 'after-join') job.frozen = bucketOf(job);
            }
            job.state = 'waiting';
            delete job.outcome;
            return;
          }
          case 'expire': {
            const inst = current[st.slot]!;
            if (inst.state !== 'running') return;
            await redis.zadd(run.keys.leases, 0, `p${st.slot}`);
            note(await run.tryJoin());
            inst.state = 'lost';
            return;
          }
          case 'restart': {
            const inst = current[st.slot]!;
            const again = run.registerProducer(`p${st.slot}`, { host: 'h', pid: 2 }, LEASE_MS);
            if (inst.state !== 'running' || runCancelled) {
              await expect(again).rejects.toBeInstanceOf(RunError);
              return;
            }
            const { incarnation, instance } = await again;
            inst.state = 'superseded';
            const next = newInstance(instance, st.slot, incarnation);
            instances.push(next);
            current[st.slot] = next;
            return;
          }
          case 'done': {
            const inst = current[st.slot]!;
            if (inst.state !== 'running') return;
            const r = await run.producerDone(`p${st.slot}`, inst.acks, inst.incarnation);
            note(r.join);
            expect(r.state).toBe('done');
            inst.state = 'done';
            return;
          }
          case 'check':
            note(await run.tryJoin());
            return;
          case 'cancelWaiting':
          case 'cancelAny': {
            // cancelWaiting: a job no consumer holds; cancelAny: any job of the run, in any state.
            const pool = st.t === 'cancelWaiting' ? jobs.filter((j) => j.state === 'waiting') : jobs;
            const job = pick(pool, st.pick);
            if (!job) return;
            const exists = (await redis.exists(jobKey(job))) === 1;
            const r = await run.cancelJob(job.id);
            if (r.joinedNow) joinedNow++;
            if (job.frozen)
              expect(r.outcome, `cancel of ${job.id}, work after the join`).toMatch(/^(joined|removed)$/);
            if (r.outcome === 'removed') noteCancelledRemoval(job);
            if (job.frozen) return;
            if (job.state === 'waiting' && r.outcome !== 'removed')
              expect.fail(`cancel of waiting ${job.id} answered ${r.outcome}`);
            else if (job.state === 'finished')
              expect(r.outcome, `cancel of finished ${job.id}`).toBe(
                exists ? 'finished' : joined ? 'joined' : 'unknown',
              );
            else if (job.state === 'gone' && !job.goneByCancel && r.outcome === 'signalled')
              job.cancelRequested = true;
            if (r.outcome === 'removed')
              expect(r.shard, `cancel of ${job.id} on the wrong shard`).toBe(job.shard);
            return;
          }
          case 'cancelActive': {
            // A consumer holds the job (its lock); the cancel reaches it, and it ends the job cancelled.
            const job = pick(
              jobs.filter((j) => j.state === 'waiting' && !j.frozen),
              st.pick,
            );
            if (!job) return;
            await redis.hset(jobKey(job), 'processedOn', Date.now());
            await redis.set(`${jobKey(job)}:lock`, 'token');
            const r = await run.cancelJob(job.id);
            expect(r.joinedNow, 'a cancel that only signalled joined the run').toBe(false);
            await redis.del(`${jobKey(job)}:lock`);
            expect(r.outcome, `cancel of active ${job.id}`).toBe('signalled');
            job.cancelRequested = true;
            await finish(job, 'cancelled', true);
            return;
          }
          case 'cancelRun': {
            const r = await run.cancel();
            if (r.joinedNow) joinedNow++;
            expect(r.outcome).toBe(joined ? 'joined' : runCancelled ? 'already' : 'cancelled');
            if (!joined) runCancelled = true;
            return;
          }
          case 'stale': {
            // A job of the run id's earlier creation: a late report or a cancel must not touch this run.
            const id = pick(stale, st.pick);
            if (!id) return;
            if (st.cancel) {
              const r = await run.cancelJob(id);
              // Not one of this run's ids: unknown to it, joined or not.
              expect(r.outcome, `cancel of ${id} of an earlier creation`).toBe('unknown');
            } else {
              for (let sh = 0; sh < SHARDS; sh++) {
                const r = await run.recordFinished(sh, [{ id, outcome: 'completed' }]);
                expect(r, `report of ${id} of an earlier creation`).toMatchObject({
                  counted: 0,
                  duplicates: 0,
                });
              }
            }
            return;
          }
        }
      };

      for (const [i, st] of steps.entries()) {
        await apply(st);
        await invariants(`after step ${i} ${JSON.stringify(st)}`);
      }

      // Liveness: every producer ends and every stored job finishes and is reported.
      for (let s = 0; s < SLOTS; s++)
        if (current[s]!.state === 'running') await apply({ t: 'done', slot: s });
      await observeSweeps();
      for (const job of jobs.filter((j) => j.state === 'waiting' && !j.frozen))
        await finish(job, 'completed', true);
      for (const job of jobs.filter((j) => j.pendingReport)) await reportFinish(job);
      for (let attempt = 0; attempt < 50 && !joined; attempt++) {
        note(await run.tryJoin());
        await invariants(`end, check ${attempt}`);
        if (!joined) await new Promise((r) => setTimeout(r, 5));
      }
      expect(joined, 'a run whose producers ended and whose jobs finished joins').toBe(true);
      earlier.set(runId, [...stale, ...jobs.map((j) => j.id)]);
    },
    // About 20 ms a case on a quiet machine; generous for many cases on a busy one.
    Math.max(60_000, RUNS * 150),
  );
});

function newInstance(id: string, slot: number, incarnation: number): Instance {
  return {
    id,
    slot,
    incarnation,
    seq: 0,
    state: 'running',
    sent: [],
    acks: Array.from({ length: SHARDS }, () => 0),
  };
}

function newJob(id: string, shard: number, instance: Instance): JobModel {
  return { id, shard, instance, state: 'waiting', goneByCancel: false, cancelRequested: false };
}
