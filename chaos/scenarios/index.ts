import { joinCallback } from './callbacks.js';
import { cancelRun } from './cancel.js';
import type { Row, ScenarioContext } from '../session.js';
import { aclUser, tlsAndAuth } from './security.js';
import { clusterBaseline, clusterFailover, clusterProducerKill } from './cluster.js';
import { badInput, idempotency, maxMemory } from './input.js';
import {
  baseline,
  clientKills,
  consumerKills,
  longJob,
  poisonJob,
  producerKill,
  redisCrash,
  redisLate,
  redisPause,
  sigtermUnderLoad,
} from './processes.js';

export type Scenario = { id: string; run: (ctx: ScenarioContext) => Promise<Row> };

/** Every scenario, in table order. `id` is what `--only` and the CI tests select by. */
export const scenarios: readonly Scenario[] = [
  { id: 'baseline', run: baseline },
  { id: 'consumer-kills', run: consumerKills },
  { id: 'poison', run: poisonJob },
  { id: 'sigterm', run: sigtermUnderLoad },
  { id: 'long-job', run: longJob },
  { id: 'client-kill', run: clientKills },
  { id: 'redis-crash-always', run: redisCrash('aof-always') },
  { id: 'redis-crash-everysec', run: redisCrash('aof-everysec') },
  { id: 'redis-crash-none', run: redisCrash('none') },
  { id: 'redis-pause', run: redisPause },
  { id: 'redis-late', run: redisLate },
  { id: 'producer-kill', run: producerKill },
  { id: 'maxmemory', run: maxMemory },
  { id: 'bad-input', run: badInput },
  { id: 'idempotency', run: idempotency(false) },
  { id: 'idempotency-after-trim', run: idempotency(true) },
  { id: 'tls-auth', run: tlsAndAuth },
  { id: 'acl', run: aclUser },
  { id: 'cluster-baseline', run: clusterBaseline },
  { id: 'cluster-failover', run: clusterFailover(0) },
  { id: 'cluster-failover-lagging', run: clusterFailover(2_000) },
  { id: 'cluster-producer-kill', run: clusterProducerKill },
  { id: 'cancel-consumer-kill', run: cancelRun('consumer-kill') },
  { id: 'cancel-redis-restart', run: cancelRun('redis-restart') },
  { id: 'cancel-cluster', run: cancelRun('cluster') },
  { id: 'callback-kills', run: joinCallback('kills-and-restart') },
  { id: 'callback-cluster-failover', run: joinCallback('cluster-failover') },
];
