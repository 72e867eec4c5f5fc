import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { pendingRunsKey } from '../shared/keys.js';
import { LiveRun, SoakContext, type FaultRecord } from './context.js';
import {
  findingFailures,
  haltedFailure,
  lingeringPendingFailures,
  stragglerFailures,
  type SoakFailure,
} from './failures.js';
import { injectFault } from './faults/index.js';
import type { FaultKind } from './menu.js';
import type { SoakOptions } from './options.js';
import { makePlan, type RunPlan, type SoakPlan } from './plan.js';
import { seededRandom } from './random.js';
import { driveRun, type RunReport } from './run-driver.js';
import { SoakWorld } from './world.js';

export type { SoakFailure } from './failures.js';

export type SoakReport = {
  seed: number;
  minutes: number;
  menu: FaultKind[];
  cluster: boolean;
  joinBoundS: number;
  durationS: number;
  runs: CheckedRun[];
  /** Planned runs never started (the soak's window closed while they waited for a slot or their id). */
  skippedRuns: string[];
  faults: FaultRecord[];
  failures: SoakFailure[];
  /** Seconds from the start to the first failed check (null when none failed). */
  firstFailureAtS: number | null;
  /** Where the logs and ledgers were kept (on failure or --keep-logs), else null. */
  kept: string | null;
};

/** How long past its window the soak still starts a planned run that was waiting for a slot. */
const LATE_START_MS = 20_000;
/** How long a run that takes an earlier run's id again waits for that run to retire. */
const REUSE_WAIT_MS = 90_000;
/** Plain workers get this long to exit on SIGTERM at the end. */
const CLOSE_GRACE_MS = 15_000;

type CheckedRun = RunReport & { faultsDuring: string[]; checkedAtS: number };

type SoakDeps = {
  binary: string;
  log: (line: string) => void;
  /** Ends the schedule early: no run starts and no fault comes after it; started runs drain. */
  stop?: AbortSignal;
  /** Stops at once: started runs are left unchecked, every process is stopped. */
  halt?: AbortSignal;
};

/**
 * The fault soak: runs on one queue start on the plan's schedule (a few at once, library and CLI
 * producers, plain workers and run consumers), faults come on theirs, each run is checked against
 * the ledger when it retires. Every process it started is stopped before it returns.
 */
export async function runSoak(options: SoakOptions, deps: SoakDeps): Promise<SoakReport> {
  const plan = makePlan(options);
  const world = await SoakWorld.open({ binary: deps.binary, cluster: options.cluster });
  const ctx = new SoakContext(world, options, seededRandom(options.seed).fork('live'), deps.log);
  const reports: CheckedRun[] = [];
  const skippedRuns: string[] = [];
  const failures: SoakFailure[] = [];
  let kept: string | null;
  let finished = false;
  try {
    for (let i = 0; i < options.workers; i++) ctx.spawnWorker();
    ctx.t0 = Date.now();
    await runSchedule(ctx, plan, deps, { reports, skippedRuns });
    if (deps.halt?.aborted) failures.push(haltedFailure(ctx.elapsedS()));
    else {
      failures.push(...findingFailures(reports), ...ctx.lateFailures);
      const pending = await world.client.zrange(pendingRunsKey(world.queue), '0', '-1');
      failures.push(...lingeringPendingFailures(pending, ctx.runs, ctx.elapsedS()));
    }
    finished = true;
  } finally {
    await ctx.close();
    const closed = await world.close({ graceMs: CLOSE_GRACE_MS, keep: true });
    failures.push(...stragglerFailures(closed.stragglers, CLOSE_GRACE_MS, ctx.elapsedS()));
    kept = closed.dir;
    if (finished && failures.length === 0 && !options.keepLogs && kept) {
      rmSync(kept, { recursive: true, force: true });
      kept = null;
    }
  }
  return {
    seed: options.seed,
    minutes: options.minutes,
    menu: options.faults,
    cluster: options.cluster,
    joinBoundS: options.joinBoundS,
    durationS: ctx.elapsedS(),
    runs: reports,
    skippedRuns,
    faults: ctx.faults,
    failures,
    firstFailureAtS: failures.length ? Math.min(...failures.map((f) => f.atS)) : null,
    kept,
  };
}

/**
 * Starts the plan's runs and injects its faults, each on time, until the window closes (at its end,
 * or early on `stop`); resolves once every started run was checked, or at once on `halt`.
 */
async function runSchedule(
  ctx: SoakContext,
  plan: SoakPlan,
  deps: Pick<SoakDeps, 'stop' | 'halt'>,
  out: { reports: CheckedRun[]; skippedRuns: string[] },
): Promise<void> {
  const window = { end: ctx.t0 + ctx.options.minutes * 60_000 };
  const stopped = aborted(deps.stop).then(() => {
    window.end = Math.min(window.end, Date.now());
  });
  const halted = aborted(deps.halt);
  const drivers: Promise<void>[] = [];
  const startRuns = async () => {
    for (const rp of plan.runs) {
      if (deps.stop?.aborted) break;
      const run = await admit(ctx, rp, window.end, { done: stopped, signal: deps.stop });
      if (!run) {
        out.skippedRuns.push(rp.key);
        continue;
      }
      drivers.push(driveRun(ctx, run).then((r) => void out.reports.push(checked(ctx, r))));
    }
  };
  const injectFaults = async () => {
    for (const f of plan.faults) {
      await Promise.race([sleepUntil(ctx.t0 + f.atS * 1000), stopped]);
      if (Date.now() > window.end || deps.stop?.aborted) break;
      ctx.faults.push(await injectFault(ctx, f));
    }
  };
  await Promise.race([Promise.all([startRuns(), injectFaults()]), halted]);
  await Promise.race([Promise.all(drivers), halted]);
}

/** A run's report as it was checked: when, and which faults landed while it was live. */
function checked(ctx: SoakContext, r: RunReport): CheckedRun {
  const checkedAtS = ctx.elapsedS();
  const faultsDuring = ctx.faults
    .filter((f) => f.applied && f.atS >= r.startedAtS - 0.5 && f.atS <= checkedAtS)
    .map((f) => `${f.kind}@${f.atS.toFixed(1)}`);
  return { ...r, faultsDuring, checkedAtS };
}

/** Resolves once `signal` aborts (never without one). */
function aborted(signal: AbortSignal | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) resolve();
    signal?.addEventListener('abort', () => resolve(), { once: true });
  });
}

/**
 * Starts a planned run at its time, once fewer than `maxRuns` runs are pending and, for a run id
 * used again, once the earlier run of that id has retired; null when that cannot happen in time.
 */
async function admit(
  ctx: SoakContext,
  rp: RunPlan,
  windowEnd: number,
  stop: { done: Promise<void>; signal?: AbortSignal },
): Promise<LiveRun | null> {
  await Promise.race([sleepUntil(ctx.t0 + rp.atS * 1000), stop.done]);
  if (stop.signal?.aborted) return null;
  const lastStart = windowEnd + LATE_START_MS;
  while (ctx.pending().length >= ctx.options.maxRuns) {
    if (Date.now() > lastStart) return null;
    await sleep(100);
  }
  if (rp.reuses) {
    const earlier = ctx.runs.find((r) => r.plan.key === rp.reuses);
    if (!earlier) return null;
    const timer = new AbortController();
    await Promise.race([
      earlier.retired,
      sleep(REUSE_WAIT_MS, undefined, { signal: timer.signal }).catch(() => undefined),
    ]);
    timer.abort();
    if (earlier.phase !== 'retired') return null;
    // Its keys may outlive its retention (the soak reported that): the id is free only once they are gone.
    while ((await ctx.world.runKeysLeft(rp.runId)).length > 0) {
      if (Date.now() > lastStart + REUSE_WAIT_MS) return null;
      await sleep(500);
    }
  }
  if (Date.now() > lastStart) return null;
  const run = new LiveRun(rp);
  ctx.runs.push(run);
  return run;
}

async function sleepUntil(at: number): Promise<void> {
  if (Date.now() < at) await sleep(at - Date.now());
}
