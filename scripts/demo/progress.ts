import type { RunStatus } from '../../shared/run/status.js';

/** One line of live progress: depth, completed/produced, producers done, consumer states. */
export function progressLine(s: RunStatus, depth: number): string {
  const states = new Map<string, number>();
  for (const c of s.consumers) states.set(c.state, (states.get(c.state) ?? 0) + 1);
  const consumers = [...states].map(([state, n]) => `${n} ${state}`).join(', ') || 'none yet';
  const finished = s.jobs.completed + s.jobs.failed;
  return (
    `depth ${depth} | done ${finished}/${s.jobs.produced}` +
    (s.jobs.failed ? ` (${s.jobs.failed} failed)` : '') +
    ` | producers ${s.producers.done + s.producers.lost}/${s.producers.expected} finished | consumers ${consumers}` +
    ` | ${s.join.state === 'joined' ? 'JOINED' : 'join pending'}`
  );
}

/** The closing summary printed once the run has joined. */
export function joinSummary(s: RunStatus, startedAt: number): string {
  const joinedAt = s.join.joinedAt ? Date.parse(s.join.joinedAt) : Date.now();
  return [
    `run ${s.runId} joined at ${s.join.joinedAt} (${((joinedAt - startedAt) / 1000).toFixed(1)} s after start)`,
    `  all ${s.producers.expected} producers finished (${s.producers.done} done, ${s.producers.lost} lost), ${s.jobs.unfinished} unfinished`,
    `  jobs: produced ${s.jobs.produced}, completed ${s.jobs.completed}, failed ${s.jobs.failed}`,
  ].join('\n');
}

const LEVELS: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
const PLAIN_FIELDS = new Set(['level', 'time', 'msg', 'service', 'pid', 'hostname']);

/**
 * A child's pino JSON line as a person reads it (`WARN message (key=value)`); anything that is not
 * a pino line is returned as it came.
 */
export function readableLogLine(line: string): string {
  if (!line.startsWith('{')) return line;
  let v: Record<string, unknown>;
  try {
    v = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof v.level !== 'number' || typeof v.msg !== 'string') return line;
  const extra = Object.entries(v)
    .filter(([k]) => !PLAIN_FIELDS.has(k))
    .map(([k, x]) => `${k}=${typeof x === 'string' ? x : JSON.stringify(x)}`);
  return `${LEVELS[v.level] ?? String(v.level)} ${v.msg}${extra.length ? ` (${extra.join(', ')})` : ''}`;
}
