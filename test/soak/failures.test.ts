import { describe, expect, it } from 'vitest';
import {
  findingFailures,
  haltedFailure,
  lingeringPendingFailures,
  stragglerFailures,
} from '../../soak/failures.js';

describe('soak failures', () => {
  it("lists every checked run's findings, runs in key order, at most 20 jobs each", () => {
    const jobs = Array.from({ length: 25 }, (_, i) => `j${i}`);
    const runs = [
      { key: 'r2', runId: 'id2', checkedAtS: 9, findings: [{ kind: 'lost' as const, detail: 'd2', jobs }] },
      { key: 'r1', runId: 'id1', checkedAtS: 5, findings: [] },
      {
        key: 'r0',
        runId: 'id0',
        checkedAtS: 3,
        findings: [
          { kind: 'late-join' as const, detail: 'd0' },
          { kind: 'straggler' as const, detail: 'd1' },
        ],
      },
    ];
    expect(findingFailures(runs)).toEqual([
      { run: 'r0', runId: 'id0', kind: 'late-join', detail: 'd0', jobs: undefined, atS: 3 },
      { run: 'r0', runId: 'id0', kind: 'straggler', detail: 'd1', jobs: undefined, atS: 3 },
      { run: 'r2', runId: 'id2', kind: 'lost', detail: 'd2', jobs: jobs.slice(0, 20), atS: 9 },
    ]);
    // The report lists the runs in the same order.
    expect(runs.map((r) => r.key)).toEqual(['r0', 'r1', 'r2']);
  });

  it("finds a retired run of the soak's still listed as pending, but not a live run or another's", () => {
    const runs = [
      { runId: 'done', phase: 'retired' },
      { runId: 'live', phase: 'joined' },
      // The same id used again: while its second run is live, the listing is that run's.
      { runId: 'again', phase: 'retired' },
      { runId: 'again', phase: 'running' },
    ];
    expect(lingeringPendingFailures(['done', 'live', 'again', 'other'], runs, 7)).toEqual([
      {
        run: '-',
        runId: 'done',
        kind: 'leftover-keys',
        detail: 'a joined run is still listed as pending',
        atS: 7,
      },
    ]);
    expect(lingeringPendingFailures([], runs, 7)).toEqual([]);
  });

  it('finds processes that outlived their SIGTERM, and a soak halted by a second signal', () => {
    expect(stragglerFailures(['consumer c1', 'worker w2'], 15_000, 30)).toEqual([
      {
        run: '-',
        runId: '-',
        kind: 'straggler',
        detail: 'consumer c1 did not exit within 15 s of SIGTERM',
        atS: 30,
      },
      {
        run: '-',
        runId: '-',
        kind: 'straggler',
        detail: 'worker w2 did not exit within 15 s of SIGTERM',
        atS: 30,
      },
    ]);
    expect(haltedFailure(12)).toEqual({
      run: '-',
      runId: '-',
      kind: 'halted',
      detail: 'stopped at once by a second signal: the runs in flight were not checked',
      atS: 12,
    });
  });
});
