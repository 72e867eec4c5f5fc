import { describe, it } from 'vitest';
import { runScenario } from './run-scenario.js';

// Scaled-down chaos scenarios (`npm run chaos -- --full` runs the full sizes); docs/chaos.md explains each.
describe('chaos: process faults', () => {
  it('1 baseline: nothing lost, nothing counted twice, joined once', () => runScenario('baseline'), 120_000);
  it('2 a consumer SIGKILLed every 2 s and replaced', () => runScenario('consumer-kills'), 180_000);
  it(
    '3 a poison job ends failed after MAX_STALLED stalls; everything else completes',
    () => runScenario('poison'),
    120_000,
  );
  it(
    '4 SIGTERM to every consumer under load: no stalls, exits within the grace',
    () => runScenario('sigterm'),
    120_000,
  );
  it('5 a job running 5 × the lock runs exactly once', () => runScenario('long-job'), 120_000);
  it(
    '10 a producer SIGKILLed mid-run shows lost and its jobs are all processed',
    () => runScenario('producer-kill'),
    120_000,
  );
});
