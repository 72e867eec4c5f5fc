import { hostname } from 'node:os';
import { metricsShape, toMetricsConfig } from '../shared/metrics/config.js';
import {
  bool,
  commonShape,
  defaultProcessId,
  int,
  optionalInt,
  optionalName,
  parseEnv,
  splitList,
  text,
  toCommonConfig,
  type Env,
} from '../shared/config.js';

const shape = {
  ...commonShape,
  ...metricsShape,
  // No default: a consumer without a run is a plain long-lived worker that stops only on a signal.
  RUN_ID: optionalName(),
  CONSUMER_ID: optionalName(),
  CONCURRENCY: int(1, 1, 10_000),
  LOCK_MS: int(30_000, 1_000, 3_600_000),
  STALLED_INTERVAL_MS: int(30_000, 500, 3_600_000),
  MAX_STALLED: int(1, 0, 1_000),
  JOB_MODULES: text(''),
  FLUSH_MS: int(10, 1, 10_000),
  QUEUE_METRICS: bool(false),
  // A handler that ignores its abort is recorded cancelled (or timed out) this long after the abort.
  CANCEL_GRACE_MS: int(5_000, 0, 3_600_000),
  // Time limit for one attempt of a built-in job type (sleep, fetch); 0 = none.
  JOB_TIMEOUT_MS: int(0, 0, 86_400_000),
  // How long a run this consumer checks may wait for producers that never register before it is
  // abandoned; unset = each run's own retention (RUN_RETENTION_S), 0 = never.
  RUN_ABANDON_S: optionalInt(0, 10 * 365 * 24 * 3600),
};

export type ConsumerConfig = ReturnType<typeof loadConsumerConfig>;

/** Consumer settings from the environment; throws ConfigError naming each bad variable. */
export function loadConsumerConfig(env: Env) {
  const e = parseEnv(shape, env);
  return {
    ...toCommonConfig(e),
    metrics: toMetricsConfig(e),
    runId: e.RUN_ID,
    consumerId: e.CONSUMER_ID ?? defaultProcessId(hostname(), process.pid),
    concurrency: e.CONCURRENCY,
    lockMs: e.LOCK_MS,
    stalledIntervalMs: e.STALLED_INTERVAL_MS,
    maxStalled: e.MAX_STALLED,
    jobModules: splitList(e.JOB_MODULES),
    flushMs: e.FLUSH_MS,
    queueMetrics: e.QUEUE_METRICS,
    cancelGraceMs: e.CANCEL_GRACE_MS,
    jobTimeoutMs: e.JOB_TIMEOUT_MS,
    /** Undefined: each run's own retention. */
    runAbandonMs: e.RUN_ABANDON_S === undefined ? undefined : e.RUN_ABANDON_S * 1000,
  };
}
