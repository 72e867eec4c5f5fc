import { describe, expect, it } from 'vitest';
import { defaultMenu } from '../../soak/menu.js';
import { parseSoakOptions, SoakUsageError } from '../../soak/options.js';
import { makePlan } from '../../soak/plan.js';
import { seededRandom } from '../../soak/random.js';

const opts = { seed: 42, minutes: 3, faults: defaultMenu(false), faultEveryS: [3, 8] as const };

describe('soak plan', () => {
  it('is the same for the same seed, and differs for another', () => {
    expect(makePlan(opts)).toEqual(makePlan(opts));
    expect(makePlan({ ...opts, seed: 43 })).not.toEqual(makePlan(opts));
  });

  it('draws faults only from the menu, and runs shaped by the variants chosen', () => {
    const plan = makePlan({ ...opts, faults: ['script-flush', 'cancel-run'] });
    expect(new Set(plan.faults.map((f) => f.kind))).toEqual(new Set(['script-flush', 'cancel-run']));
    expect(plan.runs.every((r) => r.reuses === null && r.producers.every((p) => p.keep > 0))).toBe(true);
    const varied = makePlan({ ...opts, minutes: 10, faults: ['keep-completed-0', 'reuse-run-id'] });
    expect(varied.faults).toEqual([]);
    expect(varied.runs.some((r) => r.producers.some((p) => p.keep === 0))).toBe(true);
    const reused = varied.runs.filter((r) => r.reuses);
    expect(reused.length).toBeGreaterThan(0);
    for (const r of reused) {
      const earlier = varied.runs.find((x) => x.key === r.reuses)!;
      // Same id and producer ids as the run it follows, so its job ids are the earlier run's again.
      expect(r.runId).toBe(earlier.runId);
      expect(r.producers.map((p) => p.id)).toEqual(earlier.producers.map((p) => p.id));
    }
  });

  it('keeps faults inside the window and runs a few seconds apart', () => {
    const plan = makePlan(opts);
    expect(plan.faults.every((f) => f.atS < 180)).toBe(true);
    expect(plan.runs.length).toBeGreaterThan(5);
    expect(plan.runs.every((r, i) => i === 0 || r.atS > plan.runs[i - 1]!.atS)).toBe(true);
  });

  it('a seeded random source repeats itself, and its forks are independent streams', () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    expect(Array.from({ length: 5 }, () => a.int(0, 1000))).toEqual(
      Array.from({ length: 5 }, () => b.int(0, 1000)),
    );
    expect(seededRandom(7).fork('x').next()).toBe(seededRandom(7).fork('x').next());
    expect(seededRandom(7).fork('x').next()).not.toBe(seededRandom(7).fork('y').next());
  });
});

describe('soak options', () => {
  const parse = (argv: string[], env: Record<string, string> = {}) => parseSoakOptions(argv, env, () => 99);

  it('takes flags over the environment, and a random seed when none is given', () => {
    const r = parse(['--minutes', '2', '--faults', 'script-flush,cancel-job'], {
      SOAK_SEED: '5',
      SOAK_MINUTES: '9',
    });
    expect(r).toMatchObject({
      kind: 'soak',
      options: { seed: 5, minutes: 2, faults: ['script-flush', 'cancel-job'] },
    });
    expect(parse([])).toMatchObject({ options: { seed: 99, minutes: 5, faults: defaultMenu(false) } });
  });

  it('answers --help and --list before reading anything else', () => {
    expect(parse(['--help'])).toEqual({ kind: 'help' });
    expect(parse(['-h', '--minutes', 'soon'])).toEqual({ kind: 'help' });
    expect(parse(['--list'])).toEqual({ kind: 'list' });
  });

  it('refuses unknown fault kinds, kinds the topology lacks, and bad numbers, naming them', () => {
    expect(() => parse(['--faults', 'script-flush,nope'])).toThrow(/unknown fault kind\(s\) nope/);
    expect(() => parse(['--faults', 'master-kill'])).toThrow(/master-kill: not available without --cluster/);
    expect(() => parse(['--cluster', '--faults', 'redis-pause'])).toThrow(
      /redis-pause: not available with --cluster/,
    );
    expect(() => parse(['--minutes', 'soon'])).toThrow(SoakUsageError);
    expect(() => parse([], { SOAK_SEED: '-1' })).toThrow(/SOAK_SEED/);
  });
});
