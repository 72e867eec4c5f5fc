import { describe, it } from 'vitest';
import { runScenario } from './run-scenario.js';

// Scaled-down chaos rows 25–26 (docs/chaos.md): a join callback delivered exactly once under faults.
describe('chaos: a join callback under faults at the join', () => {
  it(
    '25 a consumer SIGKILLed and Redis (AOF always) restarted at the join',
    () => runScenario('callback-kills'),
    150_000,
  );
  it(
    '26 the master holding the run slot SIGKILLed at the join, SHARDS=3',
    () => runScenario('callback-cluster-failover'),
    180_000,
  );
});
