import { setTimeout as sleep } from 'node:timers/promises';
import type { LiveRun, SoakContext } from '../context.js';
import type { Random } from '../random.js';

/** What one fault did: `applied` false when nothing fitted (no live producer, no completed job...). */
export type Outcome = { applied: boolean; target: string };

export type Inject = (ctx: SoakContext, rng: Random) => Promise<Outcome>;

export const skipped = (why: string): Outcome => ({ applied: false, target: why });

export function pickRun(runs: readonly LiveRun[], rng: Random): LiveRun | undefined {
  return runs.length ? rng.pick(runs) : undefined;
}

/** Polls `find` (every 200 ms, by default at most 8 s) until it names a target: faults wait for something to hit. */
export async function untilTarget<T>(
  find: () => T | undefined | Promise<T | undefined>,
  withinMs = 8_000,
): Promise<T | undefined> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const found = await find();
    if (found !== undefined || Date.now() > deadline) return found;
    await sleep(200);
  }
}
