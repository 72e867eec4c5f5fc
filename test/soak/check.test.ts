import { describe, expect, it } from 'vitest';
import { checkRun, type RunEvidence } from '../../soak/check.js';
import type { Execution } from '../../soak/ledger.js';

const run = 'r';
/** Put ids in the form the library gives them: `<run>+<n>+<instance>+<seq>`. */
const ids = (n: number, producer = 'p1') => Array.from({ length: n }, (_, i) => `${run}+1+${producer}+${i}`);
const ran = (
  start: number,
  end: number | null,
  outcome: Execution['outcome'] = 'ok',
  pid = 10,
): Execution => ({
  pid,
  attempt: 1,
  start,
  end,
  outcome: end === null ? null : outcome,
});

/** A clean run of `n` jobs, every one run once, joined at t=1000 with exact totals. */
function evidence(n = 3, over: Partial<RunEvidence> = {}): RunEvidence {
  return {
    runId: run,
    cancelled: false,
    resolved: new Set(ids(n)),
    killedProducers: new Set(),
    killedPids: new Set(),
    cancelledBySoak: new Set(),
    executions: new Map(ids(n).map((id) => [id, [ran(100, 200)]])),
    callback: { expected: true, starts: 1, ends: 1, excuseRepeats: false },
    join: {
      joinedAt: 1000,
      idPrefix: `${run}+1`,
      totals: { produced: n, completed: n, failed: 0, cancelled: 0, removed: 0 },
      unfinished: 0,
      cancelledIds: new Set(),
    },
    joinLatencyMs: 50,
    boundMs: 60_000,
    joinLines: 1,
    leftoverKeys: [],
    stragglers: [],
    ...over,
  };
}

const kinds = (e: RunEvidence) => checkRun(e).findings.map((f) => f.kind);

/**
 * A cancelled run that counted 5 puts of `resolved`: 2 ran (one completed, one failed once and was
 * refused at its retry), 1 swept cancelled, 2 refused at start.
 */
function cancelledRun(resolved: number): RunEvidence {
  const join = {
    ...evidence().join!,
    totals: { produced: 5, completed: 1, failed: 0, cancelled: 4, removed: 0 },
    cancelledIds: new Set(['r+1+p1+4']),
  };
  const executions = new Map([
    ['r+1+p1+0', [ran(100, 200)]],
    ['r+1+p1+1', [ran(100, 200, 'fail')]],
  ]);
  return evidence(resolved, { cancelled: true, join, executions });
}

describe('soak checker', () => {
  it('passes a run whose ledger and totals agree', () => {
    expect(checkRun(evidence())).toMatchObject({
      findings: [],
      figures: { resolved: 3, produced: 3, lost: 0 },
    });
  });

  it('leaves out puts of a later creation of the run id (a producer restarted after the join and the retention), and says so', () => {
    // p1 stalled past its lease, the run joined without it and its keys expired; restarted, it found
    // no run and created the id afresh: its puts belong to that creation, not to this join's totals.
    const later = Array.from({ length: 4 }, (_, i) => `${run}+2+p1+${i}`);
    const e = evidence(3, {
      resolved: new Set([...ids(3), ...later]),
      executions: new Map([...ids(3), ...later].map((id) => [id, [ran(100, 200)]])),
    });
    expect(checkRun(e)).toMatchObject({ findings: [], figures: { resolved: 3, produced: 3 } });
    expect(checkRun(e).elsewhere).toEqual(later);
    // Without the join's id prefix (its keys gone at once) nothing is left out.
    const unknown = { ...e, join: { ...e.join!, idPrefix: null } };
    expect(checkRun(unknown).elsewhere).toEqual([]);
    expect(kinds(unknown)).toContain('totals');
  });

  it('finds puts that resolved but were never stored (and the totals that miss them)', () => {
    const e = evidence(3, {
      resolved: new Set(ids(5)),
      executions: new Map(ids(3).map((id) => [id, [ran(100, 200)]])),
    });
    const r = checkRun(e);
    expect(r.figures.lost).toBe(2);
    expect(r.findings.find((f) => f.kind === 'lost')?.jobs).toEqual(['r+1+p1+3', 'r+1+p1+4']);
    expect(kinds(e)).toContain('totals');
  });

  it('finds totals counted twice, negative, removed, or joined with work left', () => {
    const totals = { produced: 3, completed: 3, failed: 1, cancelled: 0, removed: 0 };
    expect(kinds(evidence(3, { join: { ...evidence().join!, totals } }))).toEqual(['counted-twice']);
    const negative = { produced: 3, completed: 4, failed: -1, cancelled: 0, removed: 0 };
    expect(kinds(evidence(3, { join: { ...evidence().join!, totals: negative } }))).toEqual(['totals']);
    const removed = { produced: 3, completed: 2, failed: 0, cancelled: 0, removed: 1 };
    expect(kinds(evidence(3, { join: { ...evidence().join!, totals: removed } }))).toEqual(['removed']);
    expect(kinds(evidence(3, { join: { ...evidence().join!, unfinished: 1 } }))).toEqual(['totals']);
  });

  it('allows what a SIGKILLed producer had in flight, but not jobs of a producer nobody killed', () => {
    const executions = new Map([...ids(3), 'r+1+p2+0'].map((id) => [id, [ran(100, 200)]]));
    const join = {
      ...evidence().join!,
      totals: { produced: 4, completed: 4, failed: 0, cancelled: 0, removed: 0 },
    };
    expect(kinds(evidence(3, { executions, join, killedProducers: new Set(['p2']) }))).toEqual([]);
    expect(kinds(evidence(3, { executions, join }))).toEqual(['unexpected', 'totals']);
    // A restarted producer's later incarnation is the same producer.
    const restarted = new Map([...ids(3), 'r+1+p2~2+0'].map((id) => [id, [ran(100, 200)]]));
    expect(kinds(evidence(3, { executions: restarted, join, killedProducers: new Set(['p2']) }))).toEqual([]);
  });

  it('finds a join that did not wait for an execution, but not a duplicate whose lock was lost', () => {
    const executions = new Map(ids(3).map((id) => [id, [ran(100, 200)]]));
    executions.set('r+1+p1+1', [ran(100, 200), ran(900, 1500)]);
    const r = checkRun(evidence(3, { executions }));
    expect(r.findings.map((f) => [f.kind, f.jobs])).toEqual([['early-join', ['r+1+p1+1']]]);
    // Retried with its attempts reset: the execution spanning the join is followed by a later attempt.
    executions.set('r+1+p1+1', [ran(100, 200), ran(900, 1500, 'fail'), ran(1600, 1700)]);
    expect(kinds(evidence(3, { executions }))).toEqual(['early-join']);
    // A stale execution (its lock lost in a Redis pause) ending late, with a redelivery that began
    // while it ran, is not the join's business.
    executions.set('r+1+p1+1', [ran(100, 1500, 'ok', 11), ran(400, 600)]);
    expect(kinds(evidence(3, { executions }))).toEqual([]);
    // One still running (no end line, its process alive) counts too; one whose process was killed does not.
    executions.set('r+1+p1+1', [ran(900, null)]);
    expect(kinds(evidence(3, { executions }))).toEqual(['early-join']);
    expect(kinds(evidence(3, { executions, killedPids: new Set([10]) }))).not.toContain('early-join');
    // Work put back after the join starts after it: not early.
    executions.set('r+1+p1+1', [ran(100, 200), ran(1100, 1500)]);
    expect(kinds(evidence(3, { executions }))).toEqual([]);
  });

  it('wants the callback exactly once (a repeat is excused only around a fault that can cause one)', () => {
    const cb = (starts: number, ends: number, excuseRepeats = false) => ({
      expected: true,
      starts,
      ends,
      excuseRepeats,
    });
    expect(kinds(evidence(3, { callback: cb(0, 0) }))).toEqual(['callback']);
    expect(kinds(evidence(3, { callback: cb(2, 2) }))).toEqual(['callback']);
    expect(kinds(evidence(3, { callback: cb(2, 2, true) }))).toEqual([]);
    expect(kinds(evidence(3, { callback: { ...cb(1, 1), expected: false } }))).toEqual(['callback']);
  });

  it('in a cancelled run, counts unstarted jobs as refused at start up to what its totals leave', () => {
    const e = cancelledRun(5);
    expect(kinds(e)).toEqual([]);
    // One more resolved put than the run counted: that one is lost.
    const r = checkRun({ ...e, resolved: new Set(ids(6)) });
    expect(r.figures.lost).toBe(1);
    expect(r.findings.map((f) => f.kind)).toEqual(['lost', 'totals']);
  });

  it('reports a late or missing join, two joins, leftover keys and stragglers', () => {
    expect(kinds(evidence(3, { join: null, joinLatencyMs: null }))).toEqual(['late-join']);
    expect(kinds(evidence(3, { joinLatencyMs: 61_000 }))).toEqual(['late-join']);
    expect(kinds(evidence(3, { joinLines: 2 }))).toEqual(['joined-twice']);
    expect(kinds(evidence(3, { leftoverKeys: ['k (ttl none)'], stragglers: ['c1'] }))).toEqual([
      'leftover-keys',
      'straggler',
    ]);
  });

  it('finds a join whose keys were gone, totals short of produced, and more produced than put', () => {
    expect(kinds(evidence(3, { join: { ...evidence().join!, totals: null } }))).toEqual(['totals']);
    const short = { produced: 3, completed: 2, failed: 0, cancelled: 0, removed: 0 };
    expect(kinds(evidence(3, { join: { ...evidence().join!, totals: short } }))).toEqual(['totals']);
    const more = { produced: 4, completed: 4, failed: 0, cancelled: 0, removed: 0 };
    const r = checkRun(evidence(3, { join: { ...evidence().join!, totals: more } }));
    expect(r.findings.map((f) => f.kind)).toEqual(['counted-twice']);
    expect(r.figures.countedTwice).toBe(1);
  });

  it('says what each finding found, in the words the report prints', () => {
    const detail = (e: RunEvidence) => checkRun(e).findings.map((f) => `${f.kind}: ${f.detail}`);
    const join = evidence().join!;
    const totals = (t: Partial<NonNullable<typeof join.totals>>) => ({
      join: { ...join, totals: { produced: 3, completed: 3, failed: 0, cancelled: 0, removed: 0, ...t } },
    });
    expect(
      detail(evidence(3, { resolved: new Set(ids(10)), ...totals({ produced: 10, completed: 10 }) })),
    ).toEqual([
      'lost: 7 put(s) resolved but never ran nor were cancelled: r+1+p1+3, r+1+p1+4, r+1+p1+5, r+1+p1+6, r+1+p1+7 and 2 more',
    ]);
    const stray = new Map([...ids(3), 'r+1+p2+0'].map((id) => [id, [ran(100, 200)]]));
    expect(detail(evidence(3, { executions: stray, ...totals({ produced: 4, completed: 4 }) }))).toEqual([
      'unexpected: 1 job(s) ran that no put resolved (producer not killed): r+1+p2+0',
      'totals: produced 4, but 3 put(s) resolved',
    ]);
    expect(
      detail(
        evidence(3, {
          executions: stray,
          killedProducers: new Set(['p2']),
          ...totals({ produced: 5, completed: 5 }),
        }),
      ),
    ).toEqual([
      'counted-twice: produced 5, but 3 put(s) resolved + 1 stored while their producer was SIGKILLed',
    ]);
    expect(detail(evidence(3, { join: { ...join, totals: null } }))).toEqual([
      "totals: the run's keys were gone before its totals could be read",
    ]);
    expect(detail(evidence(3, totals({ completed: 4, failed: -1 })))).toEqual([
      'totals: negative totals: failed -1',
    ]);
    expect(detail(evidence(3, totals({ failed: 1 })))).toEqual([
      'counted-twice: completed 3 + failed 1 + cancelled 0 + removed 0 = 4, produced 3',
    ]);
    expect(detail(evidence(3, totals({ completed: 2, removed: 1 })))).toEqual([
      'removed: 1 job(s) counted removed, yet the soak removes none by hand (finished jobs counted removed?)',
    ]);
    expect(detail(evidence(3, { join: { ...join, unfinished: 2 } }))).toEqual([
      'totals: joined with 2 job(s) unfinished',
    ]);
    const running = new Map(ids(3).map((id) => [id, [ran(900, 1100)]]));
    expect(detail(evidence(3, { executions: running }))).toEqual([
      'early-join: joined while 3 job(s) were still running: r+1+p1+0, r+1+p1+1, r+1+p1+2',
    ]);
    const cb = { expected: true, starts: 3, ends: 2, excuseRepeats: false };
    expect(detail(evidence(3, { callback: cb }))).toEqual([
      'callback: onJoin callback ran 2 time(s) to the end (3 start(s))',
    ]);
    expect(detail(evidence(3, { callback: { ...cb, expected: false } }))).toEqual([
      'callback: a callback ran 3 time(s) for a run without one',
    ]);
    expect(detail(evidence(3, { join: null, joinLatencyMs: null }))).toEqual([
      'late-join: did not join within 60 s of its producers and the last fault ending',
    ]);
    expect(detail(evidence(3, { joinLatencyMs: 61_234 }))).toEqual([
      'late-join: joined 61.2 s after it could have (bound 60 s)',
    ]);
    expect(detail(evidence(3, { joinLines: 3 }))).toEqual(['joined-twice: 3 processes logged joining it']);
    expect(
      detail(evidence(3, { leftoverKeys: ['a', 'b', 'c', 'd', 'e', 'f'], stragglers: ['c1', 'p2'] })),
    ).toEqual([
      'leftover-keys: 6 key(s) outlived the retention: a, b, c, d and 2 more',
      'straggler: still running long after the join: c1, p2',
    ]);
  });

  it('gives the figures the report sums', () => {
    const running = new Map(ids(3).map((id) => [id, [ran(900, 1100)]]));
    expect(
      checkRun(evidence(3, { executions: running, joinLatencyMs: 61_000, leftoverKeys: ['a', 'b'] })).figures,
    ).toEqual({ resolved: 3, produced: 3, lost: 0, countedTwice: 0, late: true, early: 3, leftoverKeys: 2 });
    expect(checkRun(evidence(3, { join: null, joinLatencyMs: null })).figures).toMatchObject({
      produced: null,
      late: true,
    });
  });

  it("names the cancelled run's lost puts among the unstarted ones it may have refused", () => {
    const r = checkRun(cancelledRun(6));
    expect(r.findings.map((f) => f.detail)).toEqual([
      '1 put(s) resolved but never ran nor were cancelled: r+1+p1+2, r+1+p1+3, r+1+p1+5 (of 3 unstarted, 2 may be refused at start by the cancel)',
      'produced 5, but 6 put(s) resolved',
    ]);
    // A job the soak cancelled by hand is not lost though it never ran.
    const byHand = checkRun({ ...cancelledRun(5), cancelledBySoak: new Set(ids(5)) });
    expect(byHand.findings).toEqual([]);
  });
});
