import type { Execution } from './ledger.js';

/** The run's totals as its join recorded them, read the moment the soak saw it joined. */
export type JoinTotals = {
  produced: number;
  completed: number;
  failed: number;
  cancelled: number;
  removed: number;
};

export type JoinSnapshot = {
  /** Redis's clock at the join (ms). */
  joinedAt: number;
  /** The joined creation's id prefix (`<run>+<n>`); null when its keys were gone before it was read. */
  idPrefix: string | null;
  /** Null when the run's keys were gone before the soak could read them (a fault right at the join). */
  totals: JoinTotals | null;
  /** Acknowledged jobs still unfinished when the totals were read (must be 0). */
  unfinished: number;
  /** Ids the run recorded cancelled (its shards' cancelled sets). */
  cancelledIds: ReadonlySet<string>;
};

/** Everything the soak knows about one run once it has retired: the clients' ledger and Redis's word. */
export type RunEvidence = {
  runId: string;
  /** The soak cancelled the run (run.cancel()). */
  cancelled: boolean;
  /** Job ids of every put that resolved (library ledger and CLI producers' logs). */
  resolved: ReadonlySet<string>;
  /** Producer ids SIGKILLed in this run: a put in flight then may be stored without its caller knowing. */
  killedProducers: ReadonlySet<string>;
  /** Pids the soak SIGKILLed (their handlers never write an end line). */
  killedPids: ReadonlySet<number>;
  /** Ids the soak cancelled one by one (cancelJob removed or aborted them). */
  cancelledBySoak: ReadonlySet<string>;
  executions: ReadonlyMap<string, readonly Execution[]>;
  callback: { expected: boolean; starts: number; ends: number; excuseRepeats: boolean };
  /** Null: the run did not join within the bound. */
  join: JoinSnapshot | null;
  /** From the moment the run could join (producers ended, last fault over) to the join; null if none. */
  joinLatencyMs: number | null;
  boundMs: number;
  /** Processes that logged joining this run (must not exceed 1). */
  joinLines: number;
  /** Keys under the run's prefix still there after its retention. */
  leftoverKeys: readonly string[];
  /** The run's own processes still running long after its join. */
  stragglers: readonly string[];
};

export type FindingKind =
  | 'lost'
  | 'unexpected'
  | 'totals'
  | 'counted-twice'
  | 'removed'
  | 'callback'
  | 'early-join'
  | 'late-join'
  | 'joined-twice'
  | 'leftover-keys'
  | 'straggler';

export type Finding = { kind: FindingKind; detail: string; jobs?: string[] };

export type RunFigures = {
  resolved: number;
  produced: number | null;
  lost: number;
  countedTwice: number;
  late: boolean;
  early: number;
  leftoverKeys: number;
};

const sample = (ids: readonly string[], n = 5) =>
  ids.length > n ? `${ids.slice(0, n).join(', ')} and ${ids.length - n} more` : ids.join(', ');

/**
 * The producer of a put's id `<run>+<n>+<instance>+<seq>`, without its `~<n>` incarnation; null for
 * any other id (keyed, callback, or another run's).
 */
export function producerOf(runId: string, jobId: string): string | null {
  const m = /^\+\d+\+(.+)\+\d+$/.exec(jobId.slice(runId.length));
  return jobId.startsWith(runId) && m ? m[1]!.split('~')[0]! : null;
}

/** The ids the run saw (ran or swept cancelled) that no put resolved, split by whether a SIGKILL explains them. */
function unresolvedJobs(e: RunEvidence, cancelledIds: ReadonlySet<string>) {
  const extras: string[] = [];
  const unexpected: string[] = [];
  for (const id of new Set([...e.executions.keys(), ...cancelledIds])) {
    if (e.resolved.has(id)) continue;
    const producer = producerOf(e.runId, id);
    if (producer !== null && e.killedProducers.has(producer)) extras.push(id);
    else unexpected.push(id);
  }
  return { extras, unexpected };
}

/** How many puts resolved but never ran nor were cancelled (beyond what a cancel may have refused). */
function lostPuts(e: RunEvidence, cancelledIds: ReadonlySet<string>, findings: Finding[]): number {
  const unstarted = [...e.resolved].filter(
    (id) => !e.executions.has(id) && !cancelledIds.has(id) && !e.cancelledBySoak.has(id),
  );
  // A cancelled run also cancels jobs as consumers refuse to start them (a first attempt, or a retry
  // after a failed one), which its cancelled set does not list. Job by job they leave no trace, so
  // here the check is in aggregate: unstarted jobs may number what it counted but neither ran nor swept.
  const t = e.join?.totals;
  const ranNotSwept = [...e.executions.keys()].filter((id) => !cancelledIds.has(id)).length;
  const refusedAtStart = e.cancelled && t ? Math.max(0, t.produced - cancelledIds.size - ranNotSwept) : 0;
  const lostCount = Math.max(0, unstarted.length - refusedAtStart);
  const lost = lostCount > 0 ? unstarted : [];
  if (lostCount > 0)
    findings.push({
      kind: 'lost',
      detail: `${lostCount} put(s) resolved but never ran nor were cancelled: ${sample(lost)}${refusedAtStart ? ` (of ${unstarted.length} unstarted, ${refusedAtStart} may be refused at start by the cancel)` : ''}`,
      jobs: lost,
    });
  return lostCount;
}

/**
 * The join's totals against themselves and the ledger (`known` puts: resolved, plus the `extras` a
 * SIGKILLed producer stored); returns how many jobs they counted twice.
 */
function checkTotals(
  e: RunEvidence,
  t: JoinTotals,
  ledger: { known: number; extras: number; unexpected: number },
  findings: Finding[],
): number {
  const sum = t.completed + t.failed + t.cancelled + t.removed;
  const negative = Object.entries(t).filter(([, v]) => v < 0);
  if (negative.length)
    findings.push({
      kind: 'totals',
      detail: `negative totals: ${negative.map(([k, v]) => `${k} ${v}`).join(', ')}`,
    });
  if (sum !== t.produced)
    findings.push({
      kind: sum > t.produced ? 'counted-twice' : 'totals',
      detail: `completed ${t.completed} + failed ${t.failed} + cancelled ${t.cancelled} + removed ${t.removed} = ${sum}, produced ${t.produced}`,
    });
  const unconfirmed = ledger.extras ? ` + ${ledger.extras} stored while their producer was SIGKILLed` : '';
  if (t.produced < e.resolved.size || (!e.cancelled && t.produced !== ledger.known))
    findings.push({
      kind: t.produced > ledger.known + ledger.unexpected ? 'counted-twice' : 'totals',
      detail: `produced ${t.produced}, but ${e.resolved.size} put(s) resolved${unconfirmed}`,
    });
  if (t.removed > 0)
    findings.push({
      kind: 'removed',
      detail: `${t.removed} job(s) counted removed, yet the soak removes none by hand (finished jobs counted removed?)`,
    });
  if (e.join && e.join.unfinished > 0)
    findings.push({ kind: 'totals', detail: `joined with ${e.join.unfinished} job(s) unfinished` });
  return Math.max(0, sum - t.produced) + Math.max(0, t.produced - ledger.known - ledger.unexpected);
}

/** Jobs the join did not wait for. */
function earlyJoins(e: RunEvidence, findings: Finding[]): string[] {
  // An execution spanning the join means the join did not wait for it, unless a later execution of
  // the same job began while it ran: then it is a duplicate whose lock was lost (a Redis pause), and
  // the later one is the one the run counts.
  const early: string[] = [];
  if (e.join) {
    const joinedAt = e.join.joinedAt;
    for (const [id, list] of e.executions) {
      const spans = list.some((x) => {
        const end = x.end ?? (e.killedPids.has(x.pid) ? -Infinity : Infinity);
        const duplicate = list.some((y) => y !== x && y.start > x.start && y.start < end);
        return x.start < joinedAt && end > joinedAt && !duplicate;
      });
      if (spans) early.push(id);
    }
  }
  if (early.length)
    findings.push({
      kind: 'early-join',
      detail: `joined while ${early.length} job(s) were still running: ${sample(early)}`,
      jobs: early,
    });
  return early;
}

function checkCallback(e: RunEvidence, findings: Finding[]): void {
  const cb = e.callback;
  if (cb.expected && e.join && (cb.ends === 0 || (cb.ends > 1 && !cb.excuseRepeats)))
    findings.push({
      kind: 'callback',
      detail: `onJoin callback ran ${cb.ends} time(s) to the end (${cb.starts} start(s))`,
    });
  if (!cb.expected && cb.starts > 0)
    findings.push({ kind: 'callback', detail: `a callback ran ${cb.starts} time(s) for a run without one` });
}

/** The join came once and in time, and nothing of the run outlived it; returns whether it was late. */
function checkJoinAndAfter(e: RunEvidence, findings: Finding[]): boolean {
  const late = e.join === null || (e.joinLatencyMs !== null && e.joinLatencyMs > e.boundMs);
  if (late)
    findings.push({
      kind: 'late-join',
      detail:
        e.join === null
          ? `did not join within ${e.boundMs / 1000} s of its producers and the last fault ending`
          : `joined ${(e.joinLatencyMs! / 1000).toFixed(1)} s after it could have (bound ${e.boundMs / 1000} s)`,
    });
  if (e.joinLines > 1)
    findings.push({ kind: 'joined-twice', detail: `${e.joinLines} processes logged joining it` });
  if (e.leftoverKeys.length)
    findings.push({
      kind: 'leftover-keys',
      detail: `${e.leftoverKeys.length} key(s) outlived the retention: ${sample([...e.leftoverKeys], 4)}`,
    });
  if (e.stragglers.length)
    findings.push({
      kind: 'straggler',
      detail: `still running long after the join: ${e.stragglers.join(', ')}`,
    });
  return late;
}

/**
 * The soak's invariants for one run. Every put that resolved ran at least once (or was cancelled);
 * the totals its join recorded add up and equal the ledger (produced = resolved puts, plus what a
 * SIGKILLed producer had in flight; completed + failed + cancelled + removed = produced; nothing
 * finished counted removed, since the soak removes no job by hand); the join came once, within the
 * bound, and not while one of its jobs was still running; its callback ran exactly once; nothing of
 * it outlived its retention. Findings come in that order.
 */
export function checkRun(evidence: RunEvidence): {
  figures: RunFigures;
  findings: Finding[];
  /** Puts and jobs of another creation of the run id, left out of the checks (see ofJoinedCreation). */
  elsewhere: string[];
} {
  const { e, elsewhere } = ofJoinedCreation(evidence);
  const findings: Finding[] = [];
  const cancelledIds = e.join?.cancelledIds ?? new Set<string>();
  const { extras, unexpected } = unresolvedJobs(e, cancelledIds);
  const lostCount = lostPuts(e, cancelledIds, findings);
  if (unexpected.length)
    findings.push({
      kind: 'unexpected',
      detail: `${unexpected.length} job(s) ran that no put resolved (producer not killed): ${sample(unexpected)}`,
      jobs: unexpected,
    });

  const t = e.join?.totals;
  if (e.join && !t)
    findings.push({ kind: 'totals', detail: "the run's keys were gone before its totals could be read" });
  const ledger = {
    known: e.resolved.size + extras.length,
    extras: extras.length,
    unexpected: unexpected.length,
  };
  const countedTwice = t ? checkTotals(e, t, ledger, findings) : 0;
  const early = earlyJoins(e, findings);
  checkCallback(e, findings);
  const late = checkJoinAndAfter(e, findings);

  return {
    figures: {
      resolved: e.resolved.size,
      produced: t?.produced ?? null,
      lost: lostCount,
      countedTwice,
      late,
      early: early.length,
      leftoverKeys: e.leftoverKeys.length,
    },
    findings,
    elsewhere,
  };
}

/**
 * The evidence of the joined creation only. A producer that stalled past its lease, was counted
 * finished, and was restarted after the joined run's keys expired (its retention) finds no run: it
 * creates the run id afresh, a new creation with its own id prefix. Its puts and their jobs belong to
 * that creation, not to this join's totals; they are returned apart (`elsewhere`), to be reported.
 * With no prefix known (the keys were gone at the join) nothing is left out.
 */
function ofJoinedCreation(e: RunEvidence): { e: RunEvidence; elsewhere: string[] } {
  const prefix = e.join?.idPrefix;
  if (!prefix) return { e, elsewhere: [] };
  // Ids of the run's creations: `<run>+<n>` then `+`, `=` or `@` (shared/keys.ts).
  const creationOf = (id: string) => /^\+\d+/.exec(id.slice(e.runId.length))?.[0];
  const ours = (id: string) => !id.startsWith(`${e.runId}+`) || `${e.runId}${creationOf(id)}` === prefix;
  const elsewhere = [...new Set([...e.resolved, ...e.executions.keys()])].filter((id) => !ours(id));
  if (elsewhere.length === 0) return { e, elsewhere };
  return {
    e: {
      ...e,
      resolved: new Set([...e.resolved].filter(ours)),
      executions: new Map([...e.executions].filter(([id]) => ours(id))),
    },
    elsewhere,
  };
}
