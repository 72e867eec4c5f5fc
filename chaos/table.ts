import type { Row } from './session.js';

const headers = [
  'scenario',
  'jobs',
  'faults injected',
  'lost',
  'duplicated completions',
  'duplicate starts',
  'time to join',
  'result',
];

/** The chaos table as Markdown (readable in a terminal, pasteable into docs/chaos.md). */
export function formatTable(rows: readonly Row[]): string {
  const cells = rows.map((r) => [
    r.scenario,
    String(r.jobs),
    r.faults,
    String(r.lost),
    String(r.duplicated),
    String(r.duplicateStarts),
    r.joinSeconds === null ? 'no join' : `${r.joinSeconds.toFixed(1)} s`,
    r.pass ? (r.verdict === 'report' ? 'reported' : 'pass') : 'FAIL',
  ]);
  const widths = headers.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => `| ${c.map((v, i) => v.padEnd(widths[i]!)).join(' | ')} |`;
  const out = [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...cells.map(line)];
  const notes = rows.filter((r) => r.notes.length > 0).map((r) => `- ${r.scenario}: ${r.notes.join('; ')}`);
  if (notes.length) out.push('', 'Notes:', ...notes);
  return out.join('\n');
}
