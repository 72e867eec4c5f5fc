import {
  bool,
  defaultProcessId,
  ConfigError,
  commonShape,
  splitList,
  countSpec,
  int,
  name,
  optionalName,
  parseEnv,
  text,
  toCommonConfig,
  type Env,
} from '../shared/config.js';
import { hostname } from 'node:os';
import { metricsShape, toMetricsConfig } from '../shared/metrics/config.js';
import type { CallbackSpec } from '../shared/run/types.js';

const shape = {
  ...commonShape,
  ...metricsShape,
  RUN_ID: name('default'),
  PRODUCERS: int(1, 1, 100_000),
  // Job ids are <run>.<producer>.<seq> and <run>.k.<key>: a producer named "k" would share the keys' ids.
  PRODUCER_ID: optionalName().refine(
    (id) => id !== 'k',
    '"k" is reserved: job ids <run>.k.<key> belong to idempotency keys',
  ),
  JOBS: countSpec({ min: 0, max: 5 }),
  PRODUCE_INTERVAL_MS: int(2_000, 0, 3_600_000),
  BATCH_SIZE: int(1, 1, 10_000),
  // How long a lone put waits for concurrent ones to share its script call (0: the current tick only).
  PUT_LINGER_MS: int(0, 0, 1_000),
  MAX_DEPTH: int(0, 0, 10_000_000),
  JOB_TYPE: name('sleep'),
  JOB_MS: int(1_000, 0, 3_600_000),
  FETCH_URLS: text(''),
  JOB_PAYLOAD: text(''),
  JOB_MODULES: text(''),
  // Jobs read from a file (or '-': standard input), one JSON object per line, instead of JOBS of JOB_TYPE.
  JOBS_FILE: text(''),
  ATTEMPTS: int(3, 1, 1_000),
  BACKOFF_MS: int(1_000, 0, 3_600_000),
  KEEP_COMPLETED: int(1_000, 0, 10_000_000),
  KEEP_FAILED: int(10_000, 0, 10_000_000),
  // How long a joined run's keys stay in Redis (0 = for ever).
  RUN_RETENTION_S: int(7 * 24 * 3600, 0, 10 * 365 * 24 * 3600),
  // Join callbacks: a job enqueued once when the run joins (ON_SUCCESS_*: only when nothing failed).
  ON_JOIN_TYPE: optionalName(),
  ON_JOIN_PAYLOAD: text(''),
  ON_SUCCESS_TYPE: optionalName(),
  ON_SUCCESS_PAYLOAD: text(''),
  // Keep how each job ended for `status --results` / openRun().results(), bounded in bytes of JSON.
  COLLECT_RESULTS: bool(false),
  RESULT_MAX_BYTES: int(64 * 1024, 1, 16 * 1024 * 1024),
  RUN_RESULTS_MAX_BYTES: int(64 * 1024 * 1024, 1, 1024 * 1024 * 1024),
};

export type ProducerConfig = ReturnType<typeof loadProducerConfig>;

/** Producer settings from the environment; throws ConfigError naming each bad variable. */
export function loadProducerConfig(env: Env) {
  const e = parseEnv(shape, env);
  const fetchUrls = splitList(e.FETCH_URLS);
  const problems: string[] = [];
  for (const u of fetchUrls) {
    if (!URL.canParse(u) || !/^https?:$/.test(new URL(u).protocol))
      problems.push(`FETCH_URLS: "${u}" is not an http(s) URL`);
  }
  if (e.JOB_TYPE === 'fetch' && fetchUrls.length === 0)
    problems.push('FETCH_URLS: required when JOB_TYPE=fetch (comma-separated URLs)');
  let jobPayload: unknown;
  if (e.JOB_PAYLOAD) {
    try {
      jobPayload = JSON.parse(e.JOB_PAYLOAD) as unknown;
    } catch {
      problems.push(`JOB_PAYLOAD: must be JSON (got ${JSON.stringify(e.JOB_PAYLOAD)})`);
    }
  }
  const callbackPayloadOf = (variable: string, raw: string, type: string | undefined): unknown => {
    if (!raw) return null;
    if (!type) problems.push(`${variable}: set only with ${variable.replace('PAYLOAD', 'TYPE')}`);
    try {
      return JSON.parse(raw) as unknown;
    } catch {
      problems.push(`${variable}: must be JSON (got ${JSON.stringify(raw)})`);
      return null;
    }
  };
  const onJoinPayload = callbackPayloadOf('ON_JOIN_PAYLOAD', e.ON_JOIN_PAYLOAD, e.ON_JOIN_TYPE);
  const onSuccessPayload = callbackPayloadOf('ON_SUCCESS_PAYLOAD', e.ON_SUCCESS_PAYLOAD, e.ON_SUCCESS_TYPE);
  const jobsFile = e.JOBS_FILE === '' ? null : e.JOBS_FILE;
  if (jobsFile !== null)
    for (const variable of ['JOBS', 'JOB_TYPE', 'JOB_PAYLOAD', 'JOB_MS', 'FETCH_URLS'])
      if (env[variable] !== undefined && env[variable] !== '')
        problems.push(
          `${variable}: not used with JOBS_FILE (each line of the file names its type and payload)`,
        );
  if (problems.length) throw new ConfigError(problems);
  const callbacks: CallbackSpec[] = [];
  const policy = { attempts: e.ATTEMPTS, backoffMs: e.BACKOFF_MS };
  if (e.ON_JOIN_TYPE)
    callbacks.push({
      name: 'on-join',
      type: e.ON_JOIN_TYPE,
      when: 'always',
      payload: onJoinPayload,
      ...policy,
    });
  if (e.ON_SUCCESS_TYPE)
    callbacks.push({
      name: 'on-success',
      type: e.ON_SUCCESS_TYPE,
      when: 'success',
      payload: onSuccessPayload,
      ...policy,
    });
  return {
    callbacks,
    collectResults: e.COLLECT_RESULTS
      ? { maxJobBytes: e.RESULT_MAX_BYTES, maxRunBytes: e.RUN_RESULTS_MAX_BYTES }
      : null,
    ...toCommonConfig(e),
    metrics: toMetricsConfig(e),
    runId: e.RUN_ID,
    expectedProducers: e.PRODUCERS,
    retentionMs: e.RUN_RETENTION_S * 1000,
    producerId: e.PRODUCER_ID ?? defaultProcessId(hostname(), process.pid),
    jobs: e.JOBS,
    // A file's lines are put as fast as the run takes them, in batches, unless told otherwise.
    intervalMs: jobsFile !== null && env.PRODUCE_INTERVAL_MS === undefined ? 0 : e.PRODUCE_INTERVAL_MS,
    batchSize: jobsFile !== null && env.BATCH_SIZE === undefined ? 500 : e.BATCH_SIZE,
    jobsFile,
    putLingerMs: e.PUT_LINGER_MS,
    maxDepth: e.MAX_DEPTH,
    jobType: e.JOB_TYPE,
    jobMs: e.JOB_MS,
    fetchUrls,
    jobPayload,
    jobModules: splitList(e.JOB_MODULES),
    retry: {
      attempts: e.ATTEMPTS,
      backoffMs: e.BACKOFF_MS,
      keepCompleted: e.KEEP_COMPLETED,
      keepFailed: e.KEEP_FAILED,
    },
  };
}
