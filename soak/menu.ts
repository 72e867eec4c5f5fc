/**
 * The soak's fault menu. An `event` is injected at a planned moment; a `variant` changes how some
 * runs are set up (trimmed jobs, a run id used again). `--faults a,b,c` picks from this list.
 */
export const FAULTS = {
  'script-flush': { type: 'event', cluster: true, what: "SCRIPT FLUSH: Redis's script cache emptied" },
  'client-kill': { type: 'event', cluster: true, what: 'CLIENT KILL TYPE normal: every client dropped' },
  'client-kill-one': {
    type: 'event',
    cluster: false,
    what: "CLIENT KILL ID: one conveyor process's connection",
  },
  'redis-restart': {
    type: 'event',
    cluster: false,
    what: 'Redis SIGKILLed, restarted on the same port and data folder (AOF, appendfsync always)',
  },
  'redis-pause': { type: 'event', cluster: false, what: 'Redis SIGSTOPped for 1-4 s, then SIGCONT' },
  'producer-kill': {
    type: 'event',
    cluster: true,
    what: 'a producer SIGKILLed, restarted with the same PRODUCER_ID (as a container would be)',
  },
  'consumer-kill': { type: 'event', cluster: true, what: 'a consumer SIGKILLed, a replacement started' },
  'retry-completed': {
    type: 'event',
    cluster: true,
    what: "BullMQ job.retry('completed') of a finished job",
  },
  'retry-failed': { type: 'event', cluster: true, what: "BullMQ job.retry('failed') of a failed job" },
  'retry-completed-reset': {
    type: 'event',
    cluster: true,
    what: "job.retry('completed', { resetAttemptsMade, resetAttemptsStarted })",
  },
  'retry-failed-reset': {
    type: 'event',
    cluster: true,
    what: "job.retry('failed', { resetAttemptsMade, resetAttemptsStarted })",
  },
  'retry-expired': {
    type: 'event',
    cluster: true,
    what: "job.retry('completed') of a job whose run's retention ran out: the run's keys must stay gone",
  },
  'cancel-job': { type: 'event', cluster: true, what: 'openRun(...).cancelJob(id) of a put job' },
  'cancel-run': { type: 'event', cluster: true, what: 'openRun(...).cancel() of a pending run' },
  'master-kill': {
    type: 'event',
    cluster: true,
    what: 'with --cluster: a master SIGKILLed (its replica takes over), restarted later',
  },
  'keep-completed-0': {
    type: 'variant',
    cluster: true,
    what: 'some producers put with KEEP_COMPLETED=0 KEEP_FAILED=0 (BullMQ deletes finished jobs)',
  },
  'reuse-run-id': {
    type: 'variant',
    cluster: true,
    what: "some runs take an earlier run's id again once its retention (RUN_RETENTION_S 2-5 s) ran out",
  },
} as const satisfies Record<string, { type: 'event' | 'variant'; cluster: boolean; what: string }>;

export type FaultKind = keyof typeof FAULTS;

export const FAULT_KINDS = Object.keys(FAULTS) as FaultKind[];

export const isFaultKind = (name: string): name is FaultKind => Object.hasOwn(FAULTS, name);

/** The kinds injected at planned moments, in menu order. */
export const eventKinds = (menu: readonly FaultKind[]): FaultKind[] =>
  menu.filter((k) => FAULTS[k].type === 'event');

/** The whole menu a soak runs by default: every kind its topology supports (master-kill only on a cluster). */
export function defaultMenu(cluster: boolean): FaultKind[] {
  return FAULT_KINDS.filter((k) => (cluster ? FAULTS[k].cluster : k !== 'master-kill'));
}
