import { fc, test } from '@fast-check/vitest';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { jobOptions, openQueue, type JobData } from '../../shared/queue.js';
import { RunError, RunStore, type StoredJob } from '../../shared/run/run-store.js';
import { readRunStatus } from '../../shared/run/status.js';
import type { JoinAttempt } from '../../shared/run/types.js';
import { connect, dropQueue, testQueue } from '../helpers/redis.js';

/**
 * The join protocol against a real Redis under random interleavings of what producers, consumers,
 * people and failures do, with the invariants checked after every step:
 *   - the run joins at most once;
 *   - the run's `produced` always equals the distinct ids it acknowledged (each counted once);
 *   - once joined, every acknowledged job is terminal, nothing acknowledged is left waiting, and
 *     completed + failed + cancelled + removed = produced, each within what the history allows;
 *   - cancels (of a waiting job, of a running one, of the whole run, also racing puts, retries and
 *     producer restarts) end each job once: a cancelled job is never counted completed or failed;
 *   - a run whose producers all ended and whose jobs all finished joins (checked at the end of each case).
 * JOIN_PROPERTY_RUNS sets the number of cases (CI runs 200); a failure prints fast-check's seed and
 * the shrunk list of steps.
 */

const RUNS = Number(process.env.JOIN_PROPERTY_RUNS ?? 200);
// Replays a reported failure: JOIN_PROPERTY_SEED=<seed> JOIN_PROPERTY_PATH=<path> (both printed with it).
const REPLAY = process.env.JOIN_PROPERTY_SEED
  ? { seed: Number(process.env.JOIN_PROPERTY_SEED), path: process.env.JOIN_PROPERTY_PATH, endOnFailure: true }
  : {};
const SLOTS = 2;
const LEASE_MS = 60_000;

type Outcome = 'completed' | 'failed' | 'cancelled';

type JobModel = {
  id: string;
  instance: Instance;
  /** Its hash exists in BullMQ. */
  exists: boolean;
  /** The run counts it as produced. */
  acked: boolean;
  /** Withdrawn or run outside the run's accounting: never to be acknowledged. */
  rejected: boolean;
  state: 'waiting' | 'finished';
  outcome?: Outcome;
  /** A consumer reported the current finish. */
  reported: boolean;
  /** Removed by hand before it finished. */
  removedByHand: boolean;
  /** Trimmed after finishing while its finish was unreported. */
  trimmedUnreported: boolean;
  /** Put back to work after the join: outside the run's totals. */
  afterJoin: boolean;
  /** Someone asked to cancel it (by id) while it was not finished. */
  cancelRequested: boolean;
};

type Instance = {
  id: string;
  slot: number;
  incarnation: number;
  seq: number;
  state: 'running' | 'done' | 'lost' | 'superseded';
  fenced: boolean;
  /** Died between its in-flight mark and the add: nothing more from this process. */
  dying: boolean;
  /** In the in-flight set, not yet acknowledged. */
  marked: Set<string>;
  acks: number;
  /** Its last atomic put, to send again (as ioredis does when a reply was lost to a reconnect). */
  lastPut?: StoredJob[];
};

const PUT_OPTIONS = JSON.stringify(
  jobOptions({ attempts: 1, backoffMs: 0, keepCompleted: 100, keepFailed: 100 }),
);
const slot = fc.nat(SLOTS - 1);
// Weighted towards the steady state (put, acknowledge, finish, check), with failures mixed in. Jobs
// arrive two ways: the producer's atomic put, and an add acknowledged afterwards (add, then ack).
const step = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({ t: fc.constant('put' as const), slot, n: fc.integer({ min: 1, max: 3 }) }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('resend' as const), slot }) },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant('add' as const), slot, n: fc.integer({ min: 1, max: 3 }) }),
  },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('ack' as const), slot }) },
  {
    weight: 5,
    arbitrary: fc.record({
      t: fc.constant('finish' as const),
      pick: fc.nat(),
      failed: fc.boolean(),
      report: fc.boolean(),
    }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('report' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('reack' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('trim' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('retry' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('removeByHand' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('markOnly' as const), slot }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('expire' as const), slot }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('restart' as const), slot }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('done' as const), slot }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('check' as const) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('cancelWaiting' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('cancelActive' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('cancelAny' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('cancelRun' as const) }) },
);
type Step = typeof step extends fc.Arbitrary<infer S> ? S : never;

describe('join protocol properties (real Redis)', () => {
  let redis: Redis;
  let queue: string;
  let q: Queue<JobData>;
  let caseNo = 0;

  beforeAll(() => {
    redis = connect();
    queue = testQueue();
    q = openQueue(queue, redis);
  });
  afterAll(async () => {
    await q.close();
    await dropQueue(redis, queue);
    redis.disconnect();
  });

  test.prop([fc.array(step, { minLength: 1, maxLength: 60 })], { numRuns: RUNS, ...REPLAY })(
    'joins at most once, counts each acknowledged id once, and joins once everything ended',
    async (steps) => {
      const runId = `prop${++caseNo}`;
      const run = new RunStore(redis, queue, runId, 1, { reconcileGraceMs: 0, reconcileIntervalMs: 0 });
      const jobKey = (id: string) => run.shardKeys[0]!.jobPrefix + id;
      const failedKey = run.shardKeys[0]!.failed;
      await run.create(SLOTS, LEASE_MS, 0);
      const jobs: JobModel[] = [];
      const instances: Instance[] = [];
      const current: Instance[] = [];
      for (let slot = 0; slot < SLOTS; slot++) {
        const { incarnation, instance } = await run.registerProducer(
          `p${slot}`,
          { host: 'h', pid: 1 },
          LEASE_MS,
        );
        const inst = newInstance(instance, slot, incarnation);
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

      /** What a settle did to an instance's in-flight ids: added ones acknowledged, the rest dropped. */
      const applySettle = (inst: Instance) => {
        for (const id of inst.marked) {
          const job = jobs.find((j) => j.id === id);
          if (job && !job.rejected && (job.exists || job.reported)) job.acked = true;
        }
        inst.marked.clear();
        inst.fenced = true;
      };
      const observeSettles = async () => {
        for (const inst of instances)
          if (inst.state === 'superseded' && !inst.fenced) {
            if ((await redis.sismember(run.shardKeys[0]!.fenced, inst.id)) === 1) applySettle(inst);
          }
      };
      const ack = async (inst: Instance) => {
        // Every id whose add resolved (markOnly ids never were), whether BullMQ still holds the job or not.
        const ids = [...inst.marked].filter((id) => jobs.some((j) => j.id === id));
        if (ids.length === 0) return;
        try {
          const n = await run.ackAdded(0, inst.id, ids);
          expect(inst.fenced, `ack of fenced ${inst.id} accepted`).toBe(false);
          expect(n).toBe(ids.length);
          inst.acks += n;
          for (const id of ids) {
            jobs.find((j) => j.id === id)!.acked = true;
            inst.marked.delete(id);
          }
        } catch (err) {
          expect(err).toBeInstanceOf(RunError);
          expect((err as RunError).code).toBe('fenced');
          expect(inst.fenced, `ack of live ${inst.id} refused`).toBe(true);
          // The producer withdraws what it added; none of it was acknowledged.
          for (const id of ids) {
            await q.remove(id);
            const job = jobs.find((j) => j.id === id)!;
            job.exists = false;
            job.rejected = true;
            inst.marked.delete(id);
          }
        }
      };
      const finish = async (job: JobModel, outcome: Outcome, report: boolean) => {
        await redis.hset(jobKey(job.id), 'finishedOn', Date.now());
        if (outcome !== 'completed') await redis.zadd(failedKey, Date.now(), job.id);
        job.state = 'finished';
        job.outcome = outcome;
        job.reported = false;
        if (report) await reportFinish(job);
      };
      const reportFinish = async (job: JobModel) => {
        const r = await run.recordFinished(0, [
          { id: job.id, outcome: job.outcome!, instance: job.instance.id },
        ]);
        note(r.join);
        if (job.reported) expect(r.counted, `duplicate report of ${job.id} counted`).toBe(0);
        else if (!job.acked && job.instance.marked.has(job.id) && !job.instance.fenced)
          expect(r.counted, `early finish of ${job.id} not counted`).toBe(1);
        noteReported(job);
      };
      /** What a report (a consumer's, or a cancel's own) did to the model. */
      const noteReported = (job: JobModel) => {
        if (job.reported) return;
        if (!job.acked && job.instance.fenced && job.instance.marked.has(job.id)) {
          // added by a fenced instance: run outside the accounting
          job.rejected = true;
          job.instance.marked.delete(job.id);
        } else if (!job.acked && job.instance.marked.has(job.id)) {
          // finished before its acknowledgement: counted now, whether BullMQ still holds the job or not
          job.trimmedUnreported = false;
        }
        job.reported = true;
      };
      /** A job removed by a cancel (one by one, or swept out of the cancelled run by any join check). */
      const noteCancelledRemoval = (job: JobModel) => {
        job.exists = false;
        job.state = 'finished';
        job.outcome = 'cancelled';
        job.reported = false;
        noteReported(job);
      };
      /** A cancelled run's join checks remove its waiting jobs: learn which, as Redis says. */
      const observeSweeps = async () => {
        if (!runCancelled) return;
        for (const job of jobs.filter((j) => j.exists && j.state === 'waiting' && !j.rejected)) {
          const gone = (await redis.exists(jobKey(job.id))) === 0;
          if (!gone) continue;
          expect(
            await redis.sismember(run.shardKeys[0]!.cancelled, job.id),
            `${job.id} vanished without a cancel`,
          ).toBe(1);
          noteCancelledRemoval(job);
        }
      };

      const invariants = async (label: string) => {
        await observeSettles();
        await observeSweeps();
        expect(joinedNow, `${label}: joined more than once`).toBeLessThanOrEqual(1);
        const s = await readRunStatus(redis, queue, runId, LEASE_MS);
        const acked = jobs.filter((j) => j.acked);
        expect(s?.jobs.produced, `${label}: produced vs acknowledged ids`).toBe(acked.length);
        joined = s?.join.state === 'joined';
        if (!joined) return;
        expect(joinedNow, `${label}: joined without anyone seeing joinedNow`).toBe(1);
        // The totals are fixed at the join; what happens after (retries as work after the join) never moves them.
        if (totalsAtJoin !== undefined) {
          expect(s!.join.totals, `${label}: totals changed after the join`).toEqual(totalsAtJoin);
          return;
        }
        totalsAtJoin = s!.join.totals;
        const inRun = acked.filter((j) => !j.afterJoin);
        const waiting = inRun.filter((j) => j.state === 'waiting' && j.exists);
        expect(
          waiting.map((j) => j.id),
          `${label}: acknowledged jobs left waiting at the join`,
        ).toEqual([]);
        const t = s!.join.totals!;
        expect(t.completed + t.failed + t.removed + t.cancelled!, `${label}: totals add up`).toBe(t.produced);
        const count = (f: (j: JobModel) => boolean) => inRun.filter(f).length;
        const finished = (o: Outcome) => (j: JobModel) => j.state === 'finished' && j.outcome === o;
        const unsure = (j: JobModel) => j.state === 'finished' && !j.reported && j.trimmedUnreported;
        // A cancel of a job that vanished unreported (trimmed, or removed by hand) counts it cancelled.
        const vanishedCancelled = (j: JobModel) =>
          j.cancelRequested && (unsure(j) || (j.removedByHand && j.state === 'waiting'));
        for (const o of ['completed', 'failed', 'cancelled'] as const) {
          const sure = count(
            (j) => finished(o)(j) && !unsure(j) && !(o !== 'cancelled' && vanishedCancelled(j)),
          );
          expect(t[o], `${label}: ${o}`).toBeGreaterThanOrEqual(sure);
          expect(t[o], `${label}: ${o}`).toBeLessThanOrEqual(
            sure +
              count((j) => finished(o)(j) && unsure(j)) +
              (o === 'cancelled' ? count((j) => vanishedCancelled(j) && !finished(o)(j)) : 0),
          );
        }
      };

      const apply = async (st: Step) => {
        const liveOf = (slot: number) => {
          const inst = current[slot]!;
          return (inst.state === 'running' || inst.state === 'lost') && !inst.dying ? inst : undefined;
        };
        switch (st.t) {
          case 'put': {
            const inst = liveOf(st.slot);
            if (!inst) return;
            const batch = Array.from({ length: st.n }, (_, i) => {
              const seq = inst.seq++;
              const payload = { value: i, ms: 0 };
              const data = JSON.stringify({ run: runId, producer: inst.id, payload });
              return { id: `${runId}.${inst.id}.${seq}`, seq, name: 'sleep', data };
            });
            try {
              const r = await run.putJobs(0, inst.id, PUT_OPTIONS, batch);
              expect(inst.fenced, `put of fenced ${inst.id} accepted`).toBe(false);
              expect(r).toEqual({ acknowledged: st.n, storedBefore: 0 });
              inst.acks += st.n;
              inst.lastPut = batch;
              for (const { id } of batch) jobs.push({ ...newJob(id, inst), acked: true });
            } catch (err) {
              expect((err as RunError).code, String(err)).toBe('fenced');
              expect(inst.fenced, `put of live ${inst.id} refused`).toBe(true);
              for (const { id } of batch) expect(await redis.exists(jobKey(id)), `${id} stored`).toBe(0);
            }
            return;
          }
          case 'resend': {
            const inst = current[st.slot]!;
            if (!inst.lastPut) return;
            const r = await run.putJobs(0, inst.id, PUT_OPTIONS, inst.lastPut).catch((err: unknown) => {
              expect((err as RunError).code, String(err)).toBe('fenced');
              expect(inst.fenced, `resend of live ${inst.id} refused`).toBe(true);
              return undefined;
            });
            if (r)
              expect(r, 'a put sent again added or counted').toEqual({
                acknowledged: 0,
                storedBefore: inst.lastPut.length,
              });
            return;
          }
          case 'add': {
            const inst = liveOf(st.slot);
            if (!inst) return;
            for (let i = 0; i < st.n; i++) {
              const id = `${runId}.${inst.id}.${inst.seq++}`;
              await run.markInflight(0, inst.id, [id]);
              await q.add(
                'sleep',
                { run: runId, producer: inst.id, payload: { value: i, ms: 0 } },
                { jobId: id },
              );
              inst.marked.add(id);
              jobs.push(newJob(id, inst));
            }
            return;
          }
          case 'markOnly': {
            const inst = liveOf(st.slot);
            if (!inst || inst.state !== 'running') return;
            const id = `${runId}.${inst.id}.${inst.seq++}`;
            await run.markInflight(0, inst.id, [id]);
            inst.marked.add(id);
            inst.dying = true;
            return;
          }
          case 'ack': {
            const inst = liveOf(st.slot);
            if (inst) await ack(inst);
            return;
          }
          case 'reack': {
            const job = pick(
              jobs.filter((j) => j.acked),
              st.pick,
            );
            if (!job) return;
            const n = await run.ackAdded(0, job.instance.id, [job.id]).catch(() => 0);
            expect(n, 'a repeated acknowledgement counted again').toBe(0);
            return;
          }
          case 'finish': {
            const job = pick(
              jobs.filter((j) => j.exists && j.state === 'waiting'),
              st.pick,
            );
            if (job) await finish(job, st.failed ? 'failed' : 'completed', st.report);
            return;
          }
          case 'report': {
            const job = pick(
              jobs.filter((j) => j.state === 'finished' && !j.rejected),
              st.pick,
            );
            if (job) await reportFinish(job);
            return;
          }
          case 'trim': {
            const job = pick(
              jobs.filter((j) => j.exists && j.state === 'finished'),
              st.pick,
            );
            if (!job) return;
            await redis.del(jobKey(job.id));
            await redis.zrem(failedKey, job.id);
            job.exists = false;
            if (!job.reported) job.trimmedUnreported = true;
            return;
          }
          case 'removeByHand': {
            const job = pick(
              jobs.filter((j) => j.exists && j.state === 'waiting'),
              st.pick,
            );
            if (!job) return;
            await q.remove(job.id);
            job.exists = false;
            job.removedByHand = true;
            return;
          }
          case 'retry': {
            const job = pick(
              jobs.filter((j) => j.exists && j.state === 'finished' && !j.rejected),
              st.pick,
            );
            if (!job) return;
            // BullMQ's retry clears finishedOn; the consumer that takes the job asks the run first.
            await redis.hdel(jobKey(job.id), 'finishedOn', 'processedOn', 'failedReason');
            await redis.zrem(failedKey, job.id);
            const r = await run.reopen(0, job.id, job.instance.id);
            if (r === 'after-join') {
              expect(joined).toBe(true);
              job.afterJoin = true;
            }
            job.state = 'waiting';
            job.reported = false;
            job.trimmedUnreported = false;
            delete job.outcome;
            return;
          }
          case 'expire': {
            const inst = current[st.slot]!;
            if (inst.state !== 'running') return;
            await redis.zadd(run.keys.leases, 0, `p${st.slot}`);
            note(await run.tryJoin());
            inst.state = 'lost';
            applySettle(inst);
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
            if (inst.state !== 'running' || inst.dying) return;
            await ack(inst);
            const r = await run.producerDone(`p${st.slot}`, [inst.acks], inst.incarnation);
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
            const pool =
              st.t === 'cancelWaiting' ? jobs.filter((j) => j.exists && j.state === 'waiting') : jobs;
            const job = pick(pool, st.pick);
            if (!job) return;
            const r = await run.cancelJob(job.id);
            if (r.joinedNow) joinedNow++;
            const wasWaiting = job.exists && job.state === 'waiting';
            if (joined) expect(r.outcome, 'cancel after the join').toMatch(/^(joined|unknown)$/);
            else if (wasWaiting) {
              expect(r.outcome, `cancel of waiting ${job.id}`).toBe('removed');
              job.cancelRequested = true;
              noteCancelledRemoval(job);
            } else if (job.exists) expect(r.outcome, `cancel of finished ${job.id}`).toBe('finished');
            else if (job.state === 'waiting' || (job.state === 'finished' && !job.reported))
              job.cancelRequested = r.outcome === 'signalled';
            return;
          }
          case 'cancelActive': {
            // A consumer holds the job (its lock); the cancel reaches it, and it ends the job cancelled.
            const job = pick(
              jobs.filter((j) => j.exists && j.state === 'waiting'),
              st.pick,
            );
            if (!job) return;
            await redis.hset(jobKey(job.id), 'processedOn', Date.now());
            await redis.set(`${jobKey(job.id)}:lock`, 'token');
            const r = await run.cancelJob(job.id);
            expect(r.joinedNow, 'a cancel that only signalled joined the run').toBe(false);
            await redis.del(`${jobKey(job.id)}:lock`);
            if (joined) {
              expect(r.outcome).toBe('joined');
              return;
            }
            expect(r.outcome, `cancel of active ${job.id}`).toBe('signalled');
            job.cancelRequested = true;
            await redis.hset(jobKey(job.id), 'failedReason', 'conveyor: cancelled (aborted while running)');
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
        }
      };

      for (const [i, st] of steps.entries()) {
        await apply(st);
        await invariants(`after step ${i} ${JSON.stringify(st)}`);
      }

      // Liveness: every producer ends, zombies learn they are fenced, every acknowledged job finishes.
      for (const inst of instances) if (inst.fenced && inst.marked.size > 0) await ack(inst);
      for (let slot = 0; slot < SLOTS; slot++) {
        const inst = current[slot]!;
        if (inst.state === 'running' && inst.dying) await apply({ t: 'expire', slot });
        else if (inst.state === 'running') await apply({ t: 'done', slot });
      }
      await observeSettles();
      await observeSweeps();
      for (const job of jobs.filter((j) => j.acked && j.exists && j.state === 'waiting' && !j.afterJoin))
        await finish(job, 'completed', true);
      for (let attempt = 0; attempt < 50 && !joined; attempt++) {
        note(await run.tryJoin());
        await invariants(`end, check ${attempt}`);
        if (!joined) await new Promise((r) => setTimeout(r, 5));
      }
      expect(joined, 'a run whose producers ended and whose jobs finished joins').toBe(true);
    },
    // About 10 ms a case on a quiet machine; generous for many cases on a busy one.
    Math.max(60_000, RUNS * 100),
  );
});

function newInstance(id: string, slot: number, incarnation: number): Instance {
  return {
    id,
    slot,
    incarnation,
    seq: 0,
    state: 'running',
    fenced: false,
    dying: false,
    marked: new Set(),
    acks: 0,
  };
}

function newJob(id: string, instance: Instance): JobModel {
  return {
    id,
    instance,
    exists: true,
    acked: false,
    rejected: false,
    state: 'waiting',
    reported: false,
    removedByHand: false,
    trimmedUnreported: false,
    afterJoin: false,
    cancelRequested: false,
  };
}
