import { UnrecoverableError, type Job } from 'bullmq';
import type { AnyJobDefinition } from '../shared/jobs/define.js';
import { builtinJobs } from '../shared/jobs/index.js';
import type { JobRegistry } from '../shared/jobs/registry.js';
import { idPrefixOfJob } from '../shared/keys.js';
import type { Logger } from '../shared/logger.js';
import { readJobData, type JobData } from '../shared/queue.js';
import type { ConsumerConfig } from './config.js';
import type { ConsumerObserver } from './consumer.js';
import type { FinishRecorder } from './finish-recorder.js';
import { HandlerContext } from './handler-context.js';
import { JobCancelledError, type JobControl } from './job-control.js';
import type { ResultKeeper } from './result-keeper.js';
import { runSandboxed } from './sandbox.js';

/** The types JOB_TIMEOUT_MS applies to (a user's own type sets `timeoutMs` in its definition). */
const builtinTypes: ReadonlySet<AnyJobDefinition> = new Set(builtinJobs);

/** How long a terminated sandbox gets to exit before its job is given up on like any ignored abort. */
const SANDBOX_EXIT_MS = 2_000;

export type ProcessorDeps = {
  config: Pick<ConsumerConfig, 'jobTimeoutMs' | 'cancelGraceMs'>;
  registry: JobRegistry;
  recorder: FinishRecorder;
  results: ResultKeeper;
  control: JobControl;
  /** Ids of the jobs this consumer holds now (its record shows them). */
  active: Set<string>;
  log: Logger;
  observer: ConsumerObserver;
  resourcesFor: (def: AnyJobDefinition) => unknown;
  onRunaway: (jobId: string, still: boolean) => void;
};

/**
 * The BullMQ processor for one shard's worker: checks the job (type, payload, isolation), marks a
 * join callback started or a re-run counted job re-opened, refuses a cancelled job, then runs the
 * handler under the job's time limit and cancel (in a sandbox when its type asks for one) and keeps
 * its result when the run collects them.
 */
export function makeProcessor(
  deps: ProcessorDeps,
): (shard: number) => (job: Job<JobData>) => Promise<unknown> {
  const { config, registry, recorder, results, control, active, log, observer, resourcesFor, onRunaway } =
    deps;
  return (shard: number) =>
    async (job: Job<JobData>): Promise<unknown> => {
      const def = registry.get(job.name);
      if (!def)
        throw new UnrecoverableError(
          `unknown job type "${job.name}" (known: ${registry.names().join(', ')})`,
        );
      const data = readJobData(job.data);
      if (!data) throw new UnrecoverableError('job data is not a conveyor job ({ run, producer, payload })');
      const valid = registry.validate(job.name, data.payload, { measureSize: false });
      if (!valid.ok) throw new UnrecoverableError(`invalid payload: ${valid.reason}`);
      if (def.isolation && !registry.sourceOf(def.name))
        throw new UnrecoverableError(
          `job type "${def.name}" asks for isolation "${def.isolation}" but was not loaded from JOB_MODULES`,
        );
      if (data.afterRun && data.callback) {
        // A join callback: marked started on its shard before the handler runs, so no deliverer adds
        // it again once it can leave the queue (see callbacks.ts). It is not part of its run's totals.
        const store = recorder.store(data.afterRun);
        await store.callbackMark(shard, data.callback, 'started');
        await store.callbackState(data.callback, 'started');
      }
      // The run marked it counted: it was put back to work (a retry from Bull Board or job.retry(),
      // with or without fresh attempt counters), and the run must take its outcome back first.
      if (job.id && !data.afterRun && data.counted) {
        const reopened = await recorder.store(data.run).reopen(shard, job.id);
        if (reopened === 'reopened')
          log.warn({ jobId: job.id }, 'job put back to work: re-opened in its run');
        if (reopened === 'after-join')
          log.warn(
            { jobId: job.id },
            'job put back to work after its run joined: reported as work after the join',
          );
      }
      const jobId = job.id ?? '?';
      // Cancelled (by id, or with its run) before it started: the handler never runs.
      // Cancelled runs are known by creation (a run id used again is a new run); a join callback
      // belongs to no run's work and is never refused with it.
      const creation = data.afterRun ? '' : (idPrefixOfJob(jobId) ?? '');
      const refused = control.refusal(jobId, creation);
      if (refused) throw new JobCancelledError(refused);
      active.add(jobId);
      observer.jobStarted?.({ id: jobId, name: job.name, waitMs: Math.max(0, Date.now() - job.timestamp) });
      const timeoutMs = data.timeoutMs ?? def.timeoutMs ?? (builtinTypes.has(def) ? config.jobTimeoutMs : 0);
      const source = def.isolation ? registry.sourceOf(def.name) : undefined;
      // A sandbox is terminated CANCEL_GRACE_MS after its abort; the wait here is a little longer.
      const graceMs = source ? config.cancelGraceMs + SANDBOX_EXIT_MS : config.cancelGraceMs;
      const attempt = job.attemptsMade + 1;
      try {
        const result = await control.run(
          { id: jobId, run: creation, timeoutMs, graceMs },
          (signal) =>
            def.isolation && source
              ? runSandboxed(
                  def.isolation,
                  {
                    type: 'run',
                    source,
                    name: def.name,
                    payload: valid.payload,
                    jobId,
                    attempt,
                    logLevel: log.level,
                  },
                  signal(),
                  config.cancelGraceMs,
                  log,
                )
              : def.handler(
                  valid.payload,
                  new HandlerContext(jobId, attempt, resourcesFor(def), signal, log),
                ),
          onRunaway,
        );
        // Most runs keep no results: once that is known, not even an await per job.
        if (!data.afterRun && job.id && !results.keepsNone(data.run))
          await results.keep(data.run, shard, job.id, result);
        return result;
      } finally {
        active.delete(jobId);
      }
    };
}
