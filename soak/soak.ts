import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { pendingRunsKey } from '../shared/keys.js';
import { LiveRun, SoakContext, type FaultRecord } from './context.js';
import { injectFault } from './faults/index.js';
import type { FaultKind } from './menu.js';
import type { SoakOptions } from './options.js';
import { makePlan, type RunPlan } from './plan.js';
import { seededRandom } from './random.js';
import { driveRun, type RunReport } from './run-driver.js';
import { SoakWorld } from './world.js';

export type SoakFailure = {
  run: string;
  runId: string;
  kind: string;
  detail: string;
  jobs?: string[];
  /** Seconds from the start to when the soak saw it. */
  atS: number;
};

export type SoakReport = {
  seed: number;
  minutes: number;
  menu: FaultKind[];
  cluster: boolean;
  joinBoundS: number;
  durationS: number;
  runs: (RunReport & { faultsDuring: string[]; checkedAtS: number })[];
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

/**
 * The fault soak: runs on one queue start on the plan's schedule (a few at once, library and CLI
 * producers, plain workers and run consumers), faults come on theirs, each run is checked against
 * the ledger when it retires. Every process it started is stopped before it returns.
 */
export async function runSoak(
  options: SoakOptions,
  deps: {
    binary: string;
    log: (line: string) => void;
    /** Ends the schedule early: no run starts and no fault comes after it; started runs drain. */
    stop?: AbortSignal;
    /** Stops at once: started runs are left unchecked, every process is stopped. */
    halt?: AbortSignal;
  },
): Promise<SoakReport> {
  const plan = makePlan(options);
  const world = await SoakWorld.open({ binary: deps.binary, cluster: options.cluster });
  const ctx = new SoakContext(world, options, seededRandom(options.seed).fork('live'), deps.log);
  const reports: SoakReport['runs'] = [];
  const skippedRuns: string[] = [];
  const failures: SoakFailure[] = [];
  let kept: string | null;
  let finished = false;
  try {
    for (let i = 0; i < options.workers; i++) ctx.spawnWorker();
    ctx.t0 = Date.now();
    let windowEnd = ctx.t0 + options.minutes * 60_000;
    const stopped = new Promise<void>((resolve) => {
      if (deps.stop?.aborted) resolve();
      deps.stop?.addEventListener('abort', () => resolve(), { once: true });
    }).then(() => {
      windowEnd = Math.min(windowEnd, Date.now());
    });
    const halted = new Promise<void>((resolve) => {
      if (deps.halt?.aborted) resolve();
      deps.halt?.addEventListener('abort', () => resolve(), { once: true });
    });
    const drivers: Promise<void>[] = [];
    const startRuns = async () => {
      for (const rp of plan.runs) {
        if (deps.stop?.aborted) break;
        const run = await admit(ctx, rp, windowEnd, { done: stopped, signal: deps.stop });
        if (!run) {
          skippedRuns.push(rp.key);
          continue;
        }
        drivers.push(
          driveRun(ctx, run).then((r) => {
            const checkedAtS = ctx.elapsedS();
            const faultsDuring = ctx.faults
              .filter((f) => f.applied && f.atS >= r.startedAtS - 0.5 && f.atS <= checkedAtS)
              .map((f) => `${f.kind}@${f.atS.toFixed(1)}`);
            reports.push({ ...r, faultsDuring, checkedAtS });
          }),
        );
      }
    };
    const injectFaults = async () => {
      for (const f of plan.faults) {
        await Promise.race([sleepUntil(ctx.t0 + f.atS * 1000), stopped]);
        if (Date.now() > windowEnd || deps.stop?.aborted) break;
        ctx.faults.push(await injectFault(ctx, f));
      }
    };
    await Promise.race([Promise.all([startRuns(), injectFaults()]), halted]);
    await Promise.race([Promise.all(drivers), halted]);
    if (deps.halt?.aborted)
      failures.push({
        run: '-',
        runId: '-',
        kind: 'halted',
        detail: 'stopped at once by a second signal: the runs in flight were not checked',
        atS: ctx.elapsedS(),
      });
    else {
      reports.sort((a, b) => a.key.localeCompare(b.key));
      for (const r of reports)
        for (const f of r.findings)
          failures.push({
            run: r.key,
            runId: r.runId,
            kind: f.kind,
            detail: f.detail,
            jobs: f.jobs?.slice(0, 20),
            atS: r.checkedAtS,
          });
      failures.push(...ctx.lateFailures);
      // A joined run leaves the queue's list of runs to check: none of the soak's may linger there.
      const notRetired = new Set(ctx.runs.filter((r) => r.phase !== 'retired').map((r) => r.runId));
      for (const id of await world.client.zrange(pendingRunsKey(world.queue), '0', '-1'))
        if (ctx.runs.some((r) => r.runId === id) && !notRetired.has(id))
          failures.push({
            run: '-',
            runId: id,
            kind: 'leftover-keys',
            detail: 'a joined run is still listed as pending',
            atS: ctx.elapsedS(),
          });
    }
    finished = true;
  } finally {
    await ctx.close();
    const closed = await world.close({ graceMs: CLOSE_GRACE_MS, keep: true });
    for (const label of closed.stragglers)
      failures.push({
        run: '-',
        runId: '-',
        kind: 'straggler',
        detail: `${label} did not exit within ${CLOSE_GRACE_MS / 1000} s of SIGTERM`,
        atS: ctx.elapsedS(),
      });
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
