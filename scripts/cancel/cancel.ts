import { nameSchema } from '../../shared/config.js';
import type { QueueHandle } from '../../lib/queue.js';
import type { CancelJobResult, CancelRunResult } from '../../shared/run/run-store.js';

export type CancelConfig = {
  queue: string;
  /** The run to cancel (or whose job to cancel). */
  runId: string | undefined;
  /** A job of the run to cancel; the whole run when absent. */
  jobId: string | undefined;
  json: boolean;
};

export type CancelDeps = {
  /** The library's handle on the queue (its `run()` knows the run's shard count). */
  queue: QueueHandle;
  /** Where the one-line answer goes (stdout). */
  out: (line: string) => void;
};

export type CancelReport =
  | { target: 'job'; runId: string; jobId: string; result: CancelJobResult; message: string }
  | { target: 'run'; runId: string; result: CancelRunResult; message: string }
  | { target: 'none'; runId: string; message: string };

/** Bad command-line input: the message names the flag. */
export class CancelUsageError extends Error {}

/**
 * `cancel --run ID [--job JOB_ID]`: cancels one job of a run, or the whole run, from any process.
 * Returns the exit code: 0 when the cancel was made or there was nothing left to cancel (finished
 * job, joined run: said so), 1 when the run or job does not exist.
 */
export async function runCancel(
  config: CancelConfig,
  deps: CancelDeps,
): Promise<{ code: number; report: CancelReport }> {
  const { runId, jobId } = config;
  if (runId === undefined) throw new CancelUsageError('--run: which run to cancel (or set RUN_ID)');
  if (!nameSchema.safeParse(runId).success)
    throw new CancelUsageError(`--run: "${runId}" is not a valid run id`);
  if (jobId !== undefined && !/^[\w.~+=@-]{1,200}$/.test(jobId))
    throw new CancelUsageError(`--job: "${jobId}" is not a valid job id`);
  const run = await deps.queue.run(runId);
  const report = await (async (): Promise<CancelReport> => {
    if (!run) return { target: 'none', runId, message: `no run "${runId}" on queue "${config.queue}"` };
    if (jobId !== undefined) {
      const result = await run.cancelJob(jobId);
      return { target: 'job', runId, jobId, result, message: jobMessage(runId, jobId, result) };
    }
    const result = await run.cancel({ by: 'conveyor cancel' });
    return { target: 'run', runId, result, message: runMessage(runId, result) };
  })();
  deps.out(config.json ? JSON.stringify(report) : report.message);
  const missing =
    report.target === 'none' || (report.target === 'job' && report.result.outcome === 'unknown');
  return { code: missing ? 1 : 0, report };
}

function jobMessage(runId: string, jobId: string, r: CancelJobResult): string {
  switch (r.outcome) {
    case 'removed':
      return `cancelled job ${jobId} of run ${runId}: it had not started and never will${r.joinedNow ? '; it was the last unfinished job: the run joined' : ''}`;
    case 'signalled':
      return `cancelling job ${jobId} of run ${runId}: it is running; the consumer holding it aborts it and records it cancelled`;
    case 'finished':
      return `job ${jobId} of run ${runId} had already finished: nothing to cancel`;
    case 'joined':
      return `run ${runId} has already joined: nothing to cancel`;
    case 'unknown':
      return `no job ${jobId} in run ${runId}`;
  }
}

function runMessage(runId: string, r: CancelRunResult): string {
  const at = new Date(r.at).toISOString();
  switch (r.outcome) {
    case 'cancelled':
      return r.joinedNow
        ? `cancelled run ${runId}: ${r.removed} jobs not yet started were cancelled, nothing else was running: the run joined`
        : `cancelled run ${runId}: ${r.removed} jobs not yet started were cancelled; producers stop, running jobs are aborted, then the run joins`;
    case 'already':
      return `run ${runId} was already cancelled at ${at}${r.removed ? `; ${r.removed} more jobs not yet started were cancelled` : ''}`;
    case 'joined':
      return `run ${runId} has already joined (at ${at}): cancelling it changes nothing`;
  }
}
