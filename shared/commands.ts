import type { CommandSpec } from './args.js';

const common = [
  'REDIS_URL         redis://[user:password@]host:port, rediss://..., redis+cluster://h1:p1,h2:p2 (default redis://127.0.0.1:6379)',
  'REDIS_TLS_CA      CA file for rediss://',
  'QUEUE             queue name (default conveyor)',
  'SHARDS            BullMQ queues the queue is spread over (default 1)',
  'LOG_LEVEL         trace|debug|info|warn|error|fatal|silent (default info)',
  'LEASE_MS, HEARTBEAT_MS, SHUTDOWN_GRACE_MS   protocol timings',
  'Every variable: docs/reference.md (in the package: node_modules/conveyor/docs/reference.md)',
];

/** Every `conveyor` subcommand, its flags and the environment it reads. */
export const commands = {
  demo: {
    name: 'demo',
    summary:
      'Starts a private Redis (unless REDIS_URL is set), the dashboard, producers and consumers as processes, shows progress and the join. One Ctrl-C stops everything gracefully.',
    synopsis: '',
    options: {},
    env: [
      'PRODUCERS, CONSUMERS  how many processes (default 3 and 2)',
      'RUN_ID                the run (default demo-<time>)',
      'DASHBOARD_PORT        dashboard port (default 3000, else a free one); DEMO_DASHBOARD=false for none',
      'DEMO_KEEP_DASHBOARD   true: keep the dashboard up after the join until Ctrl-C',
      'DEMO_CLUSTER          n: a local Redis Cluster of n masters instead of one Redis',
      'JOB_MODULES, JOBS, JOB_MS, ...  passed to every producer and consumer',
      ...common,
    ],
  },
  producer: {
    name: 'producer',
    summary:
      'Registers in a run, enqueues JOBS jobs of JOB_TYPE, then reports done (the run joins once every producer is done and every job finished). Stops early, still reporting done, on SIGTERM/SIGINT.',
    synopsis: '',
    options: {},
    env: [
      'RUN_ID            the run (default "default"); PRODUCERS: how many producers it expects (default 1)',
      'PRODUCER_ID       this producer in the run (default <host>-<pid>); the same id again takes its place after a crash',
      'JOB_TYPE          sleep (default), fetch, or a type from JOB_MODULES',
      'JOB_MODULES       comma-separated modules exporting defineJob(...) definitions (./jobs/resize.js)',
      'JOB_PAYLOAD       JSON payload for a JOB_MODULES type; JOB_MS for sleep; FETCH_URLS for fetch',
      'JOBS_FILE         jobs from a file (- = standard input), one JSON object per line: {"type", "payload", "key"?, "timeoutMs"?}',
      'JOBS              a count or a range like 0-5 (default 0-5); PRODUCE_INTERVAL_MS, BATCH_SIZE, MAX_DEPTH',
      'ATTEMPTS, BACKOFF_MS, KEEP_COMPLETED, KEEP_FAILED   retry and retention',
      'COLLECT_RESULTS   true: keep how each job ended, for status --results (RESULT_MAX_BYTES, RUN_RESULTS_MAX_BYTES)',
      'ON_JOIN_TYPE      a job type enqueued once when the run joins (ON_JOIN_PAYLOAD); ON_SUCCESS_TYPE: only when none failed',
      'RUN_RETENTION_S   how long a joined run stays in Redis (default 7 days)',
      'METRICS_PORT      /metrics port (default 9464, 0 = any)',
      ...common,
    ],
  },
  consumer: {
    name: 'consumer',
    summary:
      'Takes jobs from the queue and runs them; with RUN_ID it cancels itself once that run joins (it serves every run on the queue meanwhile: one queue, many runs). Graceful on SIGTERM/SIGINT.',
    synopsis: '',
    options: {},
    env: [
      'RUN_ID            the run whose join stops this consumer (unset: runs until a signal)',
      'CONCURRENCY       jobs at once (default 1); CONSUMER_ID (default <host>-<pid>)',
      'JOB_MODULES       comma-separated modules exporting defineJob(...) definitions',
      'LOCK_MS, STALLED_INTERVAL_MS, MAX_STALLED   BullMQ lock and stall settings',
      'CANCEL_GRACE_MS   a handler that ignores a cancel or timeout is recorded ended after this (default 5000)',
      'JOB_TIMEOUT_MS    time limit per attempt of the built-in types (default 0: none)',
      'RUN_ABANDON_S     give up on a run waiting this long for producers that never start (default: its retention; 0 = never)',
      'METRICS_PORT      /metrics port (default 9464, 0 = any)',
      ...common,
    ],
  },
  dashboard: {
    name: 'dashboard',
    summary: 'Serves the live page, Bull Board at /queues, /api/status and /metrics for a queue.',
    synopsis: '',
    options: {},
    env: [
      'DASHBOARD_PORT    port (default 3000, 0 = any); DASHBOARD_HOST (default 127.0.0.1; 0.0.0.0 needs credentials)',
      'DASHBOARD_USER + DASHBOARD_PASSWORD (16+ characters), or DASHBOARD_TOKEN   credentials',
      'DASHBOARD_HOSTS   host names served besides localhost and IP addresses (DNS rebinding)',
      'DASHBOARD_READONLY  true: no cancel buttons; RUN_ID: the run shown by default',
      ...common,
    ],
  },
  status: {
    name: 'status',
    summary: "Prints a run's join state, counts, producers and consumers (the latest run by default).",
    synopsis: '[--run ID | --list] [--results] [--json]',
    options: {
      run: { type: 'string', help: 'the run to show (default RUN_ID, else the latest)' },
      results: {
        type: 'boolean',
        help: "a joined run's puts in put order, each with its outcome and value or error (COLLECT_RESULTS)",
      },
      list: { type: 'boolean', help: "the queue's recent runs, newest first, with state, counts and times" },
      json: { type: 'boolean', help: 'machine-readable output' },
    },
    env: ['RUN_ID            the run to show when --run is not given', ...common],
  },
  gather: {
    name: 'gather',
    summary:
      'Puts N sleep jobs in a fresh run, waits for all of them and prints one slot per job in put order: its value, or { outcome, error } when it did not complete (exit 1 then). Starts a consumer in-process when none is attached.',
    synopsis: '[N]',
    options: {},
    allowPositionals: true,
    env: ["JOB_MS            each job's sleep (default 1000); ATTEMPTS, BACKOFF_MS", ...common],
  },
  cancel: {
    name: 'cancel',
    summary:
      'Cancels one job of a run (waiting: it never runs; running: the consumer holding it aborts it) or the whole run (producers stop, jobs not yet started are cancelled, running ones aborted, then the run joins). A finished job or a joined run is left as it is, and the command says so.',
    synopsis: '--run ID [--job JOB_ID] [--json]',
    options: {
      run: { type: 'string', help: 'the run (default RUN_ID)' },
      job: { type: 'string', help: 'the job to cancel (default: the whole run)' },
      json: { type: 'boolean', help: 'machine-readable output' },
    },
    env: ['RUN_ID            the run when --run is not given', ...common],
  },
} satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof commands;
