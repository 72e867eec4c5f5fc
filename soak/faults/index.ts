import type { FaultRecord, SoakContext } from '../context.js';
import type { FaultKind } from '../menu.js';
import type { FaultPlan } from '../plan.js';
import { skipped, type Inject, type Outcome } from './common.js';
import { jobFaults } from './jobs.js';
import { processFaults } from './processes.js';
import { redisFaults } from './redis.js';

/** The event kinds; the variants (keep-completed-0, reuse-run-id) shape runs in plan.ts instead. */
type EventKind = Exclude<FaultKind, 'keep-completed-0' | 'reuse-run-id'>;

const inject: Record<EventKind, Inject> = { ...redisFaults, ...processFaults, ...jobFaults };

/** Injects one planned fault; its own seed picks the victim among what is live at that moment. */
export async function injectFault(ctx: SoakContext, f: FaultPlan): Promise<FaultRecord> {
  const started = Date.now();
  ctx.faultUnderWay = true;
  let outcome: Outcome;
  try {
    const kind = f.kind as EventKind;
    if (!Object.hasOwn(inject, kind)) throw new Error(`${f.kind} is not an event`);
    outcome = await inject[kind](ctx, ctx.rng.fork(`fault:${f.seed}`));
  } catch (err) {
    // A job that moved on between the look and the retry, a run that joined meanwhile: no fault made.
    outcome = skipped(`error: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
  } finally {
    ctx.faultUnderWay = false;
    ctx.lastFaultEnd = Date.now();
  }
  const record: FaultRecord = {
    index: f.index,
    kind: f.kind,
    atS: ctx.elapsedS(started),
    durationS: Math.round((Date.now() - started) / 100) / 10,
    applied: outcome.applied,
    target: outcome.target,
  };
  ctx.log(
    `  ${record.atS.toFixed(1)} s  ${f.kind}${outcome.applied ? '' : ' (not applied)'}: ${outcome.target}`,
  );
  return record;
}
