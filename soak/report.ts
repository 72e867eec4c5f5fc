import { FAULT_KINDS } from './menu.js';
import type { SoakReport } from './soak.js';

export type SoakSummary = {
  runs: number;
  joined: number;
  cancelled: number;
  reusedIds: number;
  putsResolved: number;
  lost: number;
  countedTwice: number;
  lateJoins: number;
  earlyJoins: number;
  leftoverKeys: number;
  failures: number;
  faultsByKind: Record<string, { planned: number; applied: number }>;
};

/** The figures the soak is judged by, summed over its runs. */
export function summarize(r: SoakReport): SoakSummary {
  const sum = (pick: (x: SoakReport['runs'][number]) => number) => r.runs.reduce((n, x) => n + pick(x), 0);
  const faultsByKind: SoakSummary['faultsByKind'] = {};
  for (const f of r.faults) {
    const k = (faultsByKind[f.kind] ??= { planned: 0, applied: 0 });
    k.planned++;
    if (f.applied) k.applied++;
  }
  return {
    runs: r.runs.length,
    joined: r.runs.filter((x) => x.joinedAtS !== null).length,
    cancelled: r.runs.filter((x) => x.cancelled).length,
    reusedIds: r.runs.filter((x) => x.reuses).length,
    putsResolved: sum((x) => x.figures.resolved),
    lost: sum((x) => x.figures.lost),
    countedTwice: sum((x) => x.figures.countedTwice),
    lateJoins: sum((x) => (x.figures.late ? 1 : 0)),
    earlyJoins: sum((x) => (x.figures.early > 0 ? 1 : 0)),
    leftoverKeys:
      sum((x) => x.figures.leftoverKeys) +
      r.failures.filter((f) => f.run === '-' && f.kind === 'leftover-keys').length,
    failures: r.failures.length,
    faultsByKind,
  };
}

/** The soak's table for a terminal (Markdown, so it pastes into docs): summary, faults, runs, failures. */
export function formatReport(r: SoakReport): string {
  const s = summarize(r);
  const out: string[] = [];
  out.push(
    `soak seed ${r.seed} (replay: SOAK_SEED=${r.seed} npm run soak -- --minutes ${r.minutes} --faults ${r.menu.join(',')}${r.cluster ? ' --cluster' : ''})`,
    `${r.durationS.toFixed(0)} s; join bound ${r.joinBoundS} s`,
    '',
    table(
      [
        'runs',
        'joined',
        'cancelled',
        'ids reused',
        'puts resolved',
        'lost',
        'counted twice',
        'late joins',
        'early joins',
        'leftover keys',
        'result',
      ],
      [
        [
          s.runs,
          s.joined,
          s.cancelled,
          s.reusedIds,
          s.putsResolved,
          s.lost,
          s.countedTwice,
          s.lateJoins,
          s.earlyJoins,
          s.leftoverKeys,
          s.failures === 0 ? 'pass' : `FAIL (${s.failures})`,
        ].map(String),
      ],
    ),
    '',
    table(
      ['fault', 'injected', 'not applicable'],
      FAULT_KINDS.filter((k) => s.faultsByKind[k]).map((k) => {
        const f = s.faultsByKind[k]!;
        return [k, String(f.applied), String(f.planned - f.applied)];
      }),
    ),
    '',
    table(
      ['run', 'producers', 'started', 'joined', 'latency', 'resolved', 'produced', 'checks'],
      r.runs.map((x) => [
        `${x.key}${x.reuses ? ` (id of ${x.reuses})` : ''}${x.cancelled ? ' cancelled' : ''}`,
        x.producers,
        `${x.startedAtS.toFixed(1)} s`,
        x.joinedAtS === null ? 'no join' : `${x.joinedAtS.toFixed(1)} s`,
        x.joinLatencyS === null ? '-' : `${x.joinLatencyS.toFixed(1)} s`,
        String(x.figures.resolved),
        x.figures.produced === null ? '-' : String(x.figures.produced),
        x.findings.length === 0 ? 'ok' : [...new Set(x.findings.map((f) => f.kind))].join(', '),
      ]),
    ),
  );
  if (r.skippedRuns.length)
    out.push('', `not started (window closed while they waited): ${r.skippedRuns.join(', ')}`);
  if (r.failures.length) {
    out.push('', `FAILED (seed ${r.seed}; first failure seen at ${r.firstFailureAtS?.toFixed(0) ?? '?'} s):`);
    for (const f of r.failures) {
      const run = r.runs.find((x) => x.key === f.run);
      out.push(`- ${f.run} ${f.runId}: ${f.kind}: ${f.detail}`);
      if (run?.faultsDuring.length) out.push(`    faults while it ran: ${run.faultsDuring.join(', ')}`);
      if (run?.notes.length) out.push(`    ${run.notes.join('; ')}`);
    }
  }
  return out.join('\n');
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((c) => c[i]!.length)));
  const line = (c: string[]) => `| ${c.map((v, i) => v.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}
