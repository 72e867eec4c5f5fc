import { describe, it } from 'vitest';
import { runScenario } from './run-scenario.js';

// Scaled-down chaos rows 22–24 (docs/chaos.md): a run cancelled mid-flight under faults.
describe('chaos: cancel a run under faults', () => {
  it('22 cancel a run while a consumer is SIGKILLed', () => runScenario('cancel-consumer-kill'), 120_000);
  it('23 cancel a run while Redis restarts (AOF always)', () => runScenario('cancel-redis-restart'), 120_000);
  it('24 cancel a run on a 3-master cluster, SHARDS=3', () => runScenario('cancel-cluster'), 120_000);
});
