import { describe, it } from 'vitest';
import { runScenario } from './run-scenario.js';

describe('chaos: Redis Cluster, the queue over 3 shards', () => {
  it(
    '19 the baseline passes unchanged on a 3-master cluster with SHARDS=3',
    () => runScenario('cluster-baseline'),
    120_000,
  );
  it(
    '20 a master SIGKILLed mid-run: its replica takes over, the run joins once, every loss visible',
    () => runScenario('cluster-failover'),
    180_000,
  );
  it(
    '20b failover to a replica 2 s behind: what Redis forgot is reported as lostAcks, never a silent join',
    () => runScenario('cluster-failover-lagging'),
    180_000,
  );
  it(
    '21 a producer SIGKILLed mid-run: every shard settles its in-flight ids, the run joins with nothing lost',
    () => runScenario('cluster-producer-kill'),
    120_000,
  );
});
