import type { Finding } from './check.js';

export type SoakFailure = {
  run: string;
  runId: string;
  kind: string;
  detail: string;
  jobs?: string[];
  /** Seconds from the start to when the soak saw it. */
  atS: number;
};

/** A run as the soak checked it: enough to report its findings. */
type CheckedRun = { key: string; runId: string; findings: Finding[]; checkedAtS: number };

/**
 * Every checked run's findings as failures, runs in key order. Sorts `runs` in place: the report
 * lists them in that order too.
 */
export function findingFailures(runs: CheckedRun[]): SoakFailure[] {
  runs.sort((a, b) => a.key.localeCompare(b.key));
  return runs.flatMap((r) =>
    r.findings.map((f) => ({
      run: r.key,
      runId: r.runId,
      kind: f.kind,
      detail: f.detail,
      jobs: f.jobs?.slice(0, 20),
      atS: r.checkedAtS,
    })),
  );
}

/**
 * A joined run leaves the queue's list of runs to check: none of the soak's may linger there.
 * `pending` is that list; `runs` are the soak's own, with their phase at the end.
 */
export function lingeringPendingFailures(
  pending: readonly string[],
  runs: readonly { runId: string; phase: string }[],
  atS: number,
): SoakFailure[] {
  const notRetired = new Set(runs.filter((r) => r.phase !== 'retired').map((r) => r.runId));
  return pending
    .filter((id) => runs.some((r) => r.runId === id) && !notRetired.has(id))
    .map((id) => ({
      run: '-',
      runId: id,
      kind: 'leftover-keys',
      detail: 'a joined run is still listed as pending',
      atS,
    }));
}

/** Processes that outlived their SIGTERM at the end of the soak. */
export function stragglerFailures(labels: readonly string[], graceMs: number, atS: number): SoakFailure[] {
  return labels.map((label) => ({
    run: '-',
    runId: '-',
    kind: 'straggler',
    detail: `${label} did not exit within ${graceMs / 1000} s of SIGTERM`,
    atS,
  }));
}

/** A second signal stopped the soak at once: its runs in flight go unchecked, which fails it. */
export function haltedFailure(atS: number): SoakFailure {
  return {
    run: '-',
    runId: '-',
    kind: 'halted',
    detail: 'stopped at once by a second signal: the runs in flight were not checked',
    atS,
  };
}
