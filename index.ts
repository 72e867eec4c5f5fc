/**
 * conveyor's public API: job types, producers, consumers, runs and their join, the dashboard.
 * Everything else in the package is internal and may change without notice.
 */
export {
  defineJob,
  type JobDefinition,
  type JobContext,
  type AnyJobDefinition,
} from './shared/jobs/define.js';
export { builtinJobs, loadJobRegistry, JobRegistry } from './shared/jobs/index.js';
export { callbackPayload } from './shared/jobs/run-report-job.js';
export type { CallbackPayload } from './shared/run/callbacks.js';
export { openProducer, type ProducerOptions, type ProducerClient } from './lib/producer.js';
export { PayloadError, type PutItem } from './producers/producer.js';
export { startConsumer, type ConsumerOptions, type ConsumerClient } from './lib/consumer.js';
export type { ConsumerHandle, ConsumerExit } from './consumers/consumer.js';
export { openRun, type RunHandle, type RunResult, type StreamedResult } from './lib/run.js';
export { openQueue, type QueueHandle } from './lib/queue.js';
export { startTracing, type TracingOptions } from './lib/tracing.js';
export type { Tracing } from './shared/tracing/index.js';
export type { CancelJobResult, CancelRunResult } from './shared/run/run-store.js';
export type { RunStatus, ShardStatus } from './shared/run/status.js';
export { RunError } from './shared/run/run-store.js';
export {
  createDashboard,
  startDashboard,
  type DashboardOptions,
  type DashboardHandle,
} from './lib/dashboard.js';
export type { ConnectionOptions } from './lib/options.js';
export { ConfigError, type Env } from './shared/config.js';
export { RedisConfigError } from './shared/redis.js';
export { EvictionPolicyError } from './shared/redis-policy.js';
/** The zod that payload schemas are written with (the same copy conveyor validates with). */
export { z } from 'zod';
/** Throw it from a handler to fail the job at once, without retries. */
export { UnrecoverableError } from 'bullmq';
