import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Job } from 'bullmq';
import { openRun } from '../../lib/run.js';
import { idPrefixOfJob, parseJobId, queueShards, shardJobPrefix } from '../../shared/keys.js';
import { readJobData } from '../../shared/queue.js';
import type { LiveRun, SoakContext } from '../context.js';
import type { Random } from '../random.js';
import { slowMarkerName } from '../soak-jobs.js';
import { pickRun, skipped, untilTarget, type Inject, type Outcome } from './common.js';

/** What an operator does to jobs and runs: BullMQ retries (Bull Board's button), cancels. */
export const jobFaults = {
  'retry-completed': (ctx, rng) => retryFinished(ctx, rng, 'completed', false),
  'retry-failed': (ctx, rng) => retryFinished(ctx, rng, 'failed', false),
  'retry-completed-reset': (ctx, rng) => retryFinished(ctx, rng, 'completed', true),
  'retry-failed-reset': (ctx, rng) => retryFinished(ctx, rng, 'failed', true),
  'retry-expired': async (ctx, rng) => {
    // A run whose id no later run has taken again: its keys are gone and must stay gone.
    const retired = ctx.runs.filter(
      (r) =>
        r.phase === 'retired' &&
        !ctx.runs.some((x) => x !== r && x.runId === r.runId && x.phase !== 'retired'),
    );
    const run = pickRun(retired.slice(-5), rng);
    if (!run) return skipped('no retired run');
    const found = await findFinished(ctx, run, 'completed');
    if (!found) return skipped(`${run.tag}: no completed job kept`);
    const { job, shard } = found;
    const retriedAt = Date.now();
    await job.retry('completed');
    // Once it has run again (and its consumer reported it), the run's prefix must hold nothing.
    await untilTarget(async () => {
      const again = await Job.fromId(ctx.queues[shard]!, job.id!);
      return again && (again.finishedOn ?? 0) > retriedAt ? true : undefined;
    }, 15_000);
    await sleep(1_000);
    const left = await ctx.world.runKeysLeft(run.runId);
    if (left.length)
      ctx.lateFailures.push({
        run: run.tag,
        runId: run.runId,
        kind: 'leftover-keys',
        detail: `a retry of ${job.id} after the run's retention brought back ${left.length} key(s): ${left
          .slice(0, 3)
          .map((k) => `${k.key} (ttl ${k.ttlMs < 0 ? 'none' : `${k.ttlMs} ms`})`)
          .join(', ')}`,
        atS: ctx.elapsedS(),
      });
    return { applied: true, target: `${run.tag} ${job.id}: ${left.length} key(s) back` };
  },
  'cancel-job': async (ctx, rng) => {
    const target = await untilTarget(() => {
      const run = pickRun(ctx.pending(), rng);
      // The latest puts: most likely still waiting or running.
      const ids = run ? [...ctx.resolved(run)].slice(-50) : [];
      return run && ids.length ? { run, jobId: rng.pick(ids) } : undefined;
    });
    if (!target) return skipped('no pending run with puts');
    const { run, jobId } = target;
    const handle = openRun({
      redis: ctx.world.client,
      queue: ctx.world.queue,
      shards: ctx.world.shards,
      runId: run.runId,
    });
    const r = await handle.cancelJob(jobId);
    if (r.outcome === 'removed' || r.outcome === 'signalled') run.cancelledJobs.add(jobId);
    if (r.joinedNow) run.harnessJoins++;
    return {
      applied: r.outcome === 'removed' || r.outcome === 'signalled',
      target: `${run.tag} ${jobId}: ${r.outcome}`,
    };
  },
  'cancel-run': async (ctx, rng) => {
    const run = await untilTarget(() =>
      pickRun(
        ctx.pending().filter((r) => !r.cancelled && ctx.resolved(r).size > 0),
        rng,
      ),
    );
    if (!run) return skipped('no pending run');
    const handle = openRun({
      redis: ctx.world.client,
      queue: ctx.world.queue,
      shards: ctx.world.shards,
      runId: run.runId,
    });
    const r = await handle.cancel();
    if (r.outcome !== 'joined') run.cancelled = true;
    if (r.joinedNow) run.harnessJoins++;
    return {
      applied: r.outcome !== 'joined',
      target: `${run.tag} (${run.runId}): ${r.outcome}, ${r.removed} removed`,
    };
  },
} satisfies Record<string, Inject>;

/** A pending run, 80 % of the time; else one that joined and is within its retention (work after the join). */
function pickRetryRun(ctx: SoakContext, rng: Random): LiveRun | undefined {
  const pending = ctx.pending();
  const joined = ctx.withinRetention();
  return pickRun(rng.chance(0.8) || joined.length === 0 ? pending : joined, rng);
}

/**
 * BullMQ's retry of a finished job of a live run (Bull Board's retry button does the same). A marker
 * file first makes the retried execution slow, so a run that joins without waiting for it is seen.
 */
async function retryFinished(
  ctx: SoakContext,
  rng: Random,
  state: 'completed' | 'failed',
  reset: boolean,
): Promise<Outcome> {
  const found = await untilTarget(async () => {
    const run = pickRetryRun(ctx, rng);
    const found = run && (await findFinished(ctx, run, state));
    return run && found ? { run, ...found } : undefined;
  });
  if (!found) return skipped(`no ${state} job of a live run`);
  const { run, job, tag } = found;
  writeFileSync(join(ctx.world.files.slowDir, slowMarkerName(tag, job.id!)), '');
  await job.retry(state, reset ? { resetAttemptsMade: true, resetAttemptsStarted: true } : undefined);
  const earlier = tag === run.tag ? '' : `, a job of ${tag}`;
  return { applied: true, target: `${run.tag} ${job.id} (run ${run.phase}${earlier})` };
}

/**
 * A job of the run id in BullMQ's completed or failed set: of this run, or of an earlier run of the
 * same id (as an operator retrying "run X's failed jobs" in Bull Board would pick). `tag` is the
 * run its payload names.
 */
async function findFinished(
  ctx: SoakContext,
  run: LiveRun,
  state: 'completed' | 'failed',
): Promise<{ job: Job; shard: number; tag: string } | undefined> {
  for (const [i, shard] of queueShards(ctx.world.queue, ctx.world.shards).entries()) {
    const ids = await ctx.world.client.zrandmember(`${shardJobPrefix(shard)}${state}`, 100);
    for (const id of ids.filter((id) => isPutOfRunId(id, run.runId))) {
      const job = await Job.fromId(ctx.queues[i]!, id);
      const payload = job && (readJobData(job.data)?.payload as { tag?: unknown } | undefined);
      if (job && typeof payload?.tag === 'string') return { job, shard: i, tag: payload.tag };
    }
  }
  return undefined;
}

/** A put's job (not a join callback) of any creation of `runId`: `<runId>+<n>+...` or `<runId>+<n>=...`. */
export function isPutOfRunId(id: string, runId: string): boolean {
  const prefix = idPrefixOfJob(id);
  if (!prefix || prefix.slice(0, prefix.lastIndexOf('+')) !== runId) return false;
  return parseJobId(prefix, id)?.kind !== 'callback';
}
