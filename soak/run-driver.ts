import { setTimeout as sleep } from 'node:timers/promises';
import { queueShards, runKeys, shardRunKeys } from '../shared/keys.js';
import { readRunStatus } from '../shared/run/status.js';
import { checkRun, type Finding, type JoinSnapshot, type RunFigures } from './check.js';
import type { LiveRun, SoakContext } from './context.js';
import { joinLines } from './ledger.js';
import { TIMINGS } from './world.js';

export type RunReport = {
  key: string;
  runId: string;
  reuses: string | null;
  producers: string;
  keepCompleted0: boolean;
  onJoin: boolean;
  retentionS: number;
  cancelled: boolean;
  startedAtS: number;
  joinedAtS: number | null;
  /** From the moment the run could join (its producers ended, the last fault over) to the join. */
  joinLatencyS: number | null;
  figures: RunFigures;
  findings: Finding[];
  notes: string[];
};

/** How long producers may take before the soak stops waiting for them (they put a few hundred jobs). */
const PRODUCING_LIMIT_MS = 180_000;
/** After the join: how long the run's callback, its last handlers and its processes get to finish. */
const SETTLE_MS = 30_000;
/** After the retention: how long the run's keys get to disappear. */
const EXPIRY_GRACE_MS = 10_000;

/**
 * Drives one run from start to retirement: starts its producers (and its own consumer), waits for
 * the join within the bound, reads its totals the moment it joined, lets its callback and last
 * handlers finish, waits out its retention, then checks everything against the ledger.
 */
export async function driveRun(ctx: SoakContext, run: LiveRun): Promise<RunReport> {
  const { plan } = run;
  run.phase = 'running';
  run.startedAt = Date.now();
  ctx.log(
    `  ${ctx.elapsedS().toFixed(1)} s  ${plan.key} ${plan.runId} starts: ${describeProducers(run)}${plan.reuses ? ` (id of ${plan.reuses} again)` : ''}`,
  );
  if (plan.runConsumer) ctx.spawnRunConsumer(run);
  for (const p of plan.producers) ctx.spawnProducer(run, p);

  const boundMs = ctx.options.joinBoundS * 1000;
  const joined = await waitForJoin(ctx, run, boundMs);
  const notes: string[] = [];
  let leftover: string[] = [];
  let stragglers: string[] = [];
  if (joined) {
    run.phase = 'joined';
    run.joinedAt = joined.snapshot.joinedAt;
    ctx.log(
      `  ${ctx.elapsedS().toFixed(1)} s  ${plan.key} joined${run.cancelled ? ' (cancelled)' : ''}: ${JSON.stringify(joined.snapshot.totals)}`,
    );
    stragglers = await settle(ctx, run);
    leftover = await keysAfterRetention(ctx, run, joined.snapshot.joinedAt);
  } else ctx.log(`  ${ctx.elapsedS().toFixed(1)} s  ${plan.key} did NOT join within the bound`);

  ctx.handlers.refresh();
  const resolved = ctx.resolved(run);
  const cb = ctx.handlers.callbacks(run.tag);
  const since = run.joinedAt ?? Date.now();
  const disturbed = ctx.faults.some(
    (f) =>
      [
        'redis-pause',
        'redis-restart',
        'consumer-kill',
        'client-kill',
        'client-kill-one',
        'master-kill',
      ].includes(f.kind) && ctx.t0 + (f.atS + f.durationS) * 1000 >= since - 1_000,
  );
  const libraryJoins = ctx.puts
    .notes(run.tag)
    .filter((l) => l.startsWith('done ') && l.endsWith(' true')).length;
  const { figures, findings, elsewhere } = checkRun({
    runId: run.runId,
    cancelled: run.cancelled,
    resolved,
    killedProducers: run.killedProducers,
    killedPids: ctx.killedPids,
    cancelledBySoak: run.cancelledJobs,
    executions: ctx.handlers.executions(run.tag),
    callback: { expected: plan.onJoin, starts: cb.starts, ends: cb.ends, excuseRepeats: disturbed },
    join: joined?.snapshot ?? null,
    joinLatencyMs: joined?.latencyMs ?? null,
    boundMs,
    joinLines:
      run.harnessJoins +
      libraryJoins +
      ctx.world.procs.all.reduce((n, p) => n + joinLines(run.runId, p.output(), run.startedAt), 0),
    leftoverKeys: leftover,
    stragglers,
  });
  if (elsewhere.length)
    notes.push(
      `${elsewhere.length} put(s) in a later creation of the run id (a producer restarted after the join and its retention), not checked against this join: ${elsewhere.slice(0, 2).join(', ')}${elsewhere.length > 2 ? ', ...' : ''}`,
    );
  if (run.killedProducers.size)
    notes.push(`producers SIGKILLed and restarted: ${[...run.killedProducers].join(', ')}`);
  if (run.cancelledJobs.size) notes.push(`${run.cancelledJobs.size} job(s) cancelled one by one`);
  const refusals = ctx.puts.notes(run.tag).filter((l) => !/^done \S+ \S+ done (true|false)$/.test(l));
  if (refusals.length)
    notes.push(`library producers: ${refusals.slice(0, 3).join('; ')}${refusals.length > 3 ? '; ...' : ''}`);
  ctx.handlers.forget(run.tag);
  ctx.puts.forget(run.tag);
  for (const p of run.processes()) if (p.exited === null) p.signal('SIGKILL');
  run.end(joined ? 'retired' : 'abandoned');
  ctx.log(
    `  ${ctx.elapsedS().toFixed(1)} s  ${plan.key} checked: ${findings.length === 0 ? 'ok' : findings.map((f) => f.kind).join(', ')}`,
  );
  return {
    key: plan.key,
    runId: plan.runId,
    reuses: plan.reuses,
    producers: describeProducers(run),
    keepCompleted0: plan.producers.some((p) => p.keep === 0),
    onJoin: plan.onJoin,
    retentionS: plan.retentionS,
    cancelled: run.cancelled,
    startedAtS: ctx.elapsedS(run.startedAt),
    joinedAtS: run.joinedAt === null ? null : ctx.elapsedS(run.joinedAt),
    joinLatencyS: joined ? Math.round(joined.latencyMs / 100) / 10 : null,
    figures,
    findings,
    notes,
  };
}

function describeProducers(run: LiveRun): string {
  return run.plan.producers
    .map((p) => `${p.id} ${p.kind} ${p.jobs}${p.keep === 0 ? ' keep0' : ''}`)
    .join(', ');
}

/**
 * Polls the run's state until it joins, then reads its totals at once (a short retention gives them
 * seconds). Null when it did not join within the bound after its producers and the last fault ended.
 */
async function waitForJoin(
  ctx: SoakContext,
  run: LiveRun,
  boundMs: number,
): Promise<{ snapshot: JoinSnapshot; latencyMs: number } | null> {
  const meta = runKeys(ctx.world.queue, run.runId).meta;
  for (;;) {
    const [state, joinedAt] = await ctx.world.client.hmget(meta, 'state', 'joinedAt');
    const ended = run.producersEndedAt();
    // An earlier run of the same id (its keys not yet gone) joined before this one began: not this join.
    if (state === 'joined' && Number(joinedAt) >= run.startedAt - 1_000) {
      const snapshot = await snapshotAtJoin(ctx, run, Number(joinedAt));
      const readyAt = ended === null ? snapshot.joinedAt : Math.max(ended, ctx.lastFaultEnd);
      return { snapshot, latencyMs: Math.max(0, snapshot.joinedAt - readyAt) };
    }
    const readyAt =
      ended === null
        ? run.startedAt + PRODUCING_LIMIT_MS
        : ctx.faultUnderWay
          ? Date.now()
          : Math.max(ended, ctx.lastFaultEnd);
    if (Date.now() > readyAt + boundMs) return null;
    await sleep(100);
  }
}

async function snapshotAtJoin(ctx: SoakContext, run: LiveRun, joinedAt: number): Promise<JoinSnapshot> {
  const { client, queue, shards } = ctx.world;
  const status = await readRunStatus(client, queue, run.runId, Number(TIMINGS.LEASE_MS));
  const cancelledIds = new Set<string>();
  for (const shard of queueShards(queue, shards))
    for (const id of await client.smembers(shardRunKeys(shard, run.runId).cancelled)) cancelledIds.add(id);
  const t = status?.join.totals;
  return {
    joinedAt,
    idPrefix: status?.idPrefix ?? null,
    totals: t
      ? {
          produced: t.produced,
          completed: t.completed,
          failed: t.failed,
          cancelled: t.cancelled ?? 0,
          removed: t.removed,
        }
      : null,
    unfinished: status?.jobs.unfinished ?? 0,
    cancelledIds,
  };
}

/**
 * After the join: the callback runs, the handlers that were still going end (a join that did not
 * wait for one shows as its end after the join), the run's processes exit. Returns those that did not.
 */
async function settle(ctx: SoakContext, run: LiveRun): Promise<string[]> {
  const deadline = Date.now() + SETTLE_MS;
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };
  while (Date.now() < deadline) {
    ctx.handlers.refresh();
    const callbackDone = !run.plan.onJoin || ctx.handlers.callbacks(run.tag).ends > 0;
    const running = [...ctx.handlers.executions(run.tag).values()].some((list) =>
      list.some((x) => x.end === null && !ctx.killedPids.has(x.pid) && alive(x.pid)),
    );
    const processesLeft = run.pendingRestarts > 0 || run.processes().some((p) => p.exited === null);
    if (callbackDone && !running && !processesLeft) return [];
    await sleep(200);
  }
  return run
    .processes()
    .filter((p) => p.exited === null)
    .map((p) => p.label);
}

/**
 * Waits out the run's retention, then for its keys to go; returns the keys still there (with their
 * TTLs). A write after the join renews the TTL (work after the join, a consumer finishing a held
 * job), so the retention counts from the run's last activity the soak saw.
 */
async function keysAfterRetention(ctx: SoakContext, run: LiveRun, joinedAt: number): Promise<string[]> {
  const retentionMs = run.plan.retentionS * 1000;
  const lastActivity = () => {
    let at = joinedAt;
    for (const list of ctx.handlers.refresh().executions(run.tag).values())
      for (const x of list) at = Math.max(at, x.end ?? x.start);
    for (const p of run.processes()) at = Math.max(at, p.exited?.at ?? 0);
    return at;
  };
  const expiresAt = joinedAt + retentionMs;
  if (Date.now() < expiresAt) await sleep(expiresAt - Date.now());
  for (;;) {
    const left = await ctx.world.runKeysLeft(run.runId);
    if (left.length === 0) return [];
    if (Date.now() > lastActivity() + retentionMs + EXPIRY_GRACE_MS)
      return left.map((k) => `${k.key} (ttl ${k.ttlMs < 0 ? 'none' : `${k.ttlMs} ms`})`);
    await sleep(500);
  }
}
