import type { RunStatus } from '../../shared/run/status.js';
import { joinSummary } from './progress.js';

export type ChildExit = { code: number | null; signal: NodeJS.Signals | null };

/**
 * A child ended well when it exited 0, or, after a Ctrl-C, when the demo's SIGTERM ended it before
 * it had installed its handler (it was still loading: there was nothing to stop gracefully).
 */
export function endedWell(exit: ChildExit, interrupted: boolean): boolean {
  return exit.code === 0 || (interrupted && exit.signal === 'SIGTERM');
}

/** The demo's last lines: how the run ended and how each process did, in words a person reads. */
export function endSummary(
  runId: string,
  final: RunStatus | null,
  startedAt: number,
  interrupted: boolean,
  children: readonly { label: string }[],
  exits: readonly ChildExit[],
): string {
  const lines: string[] = [];
  if (final?.join.state === 'joined') lines.push(joinSummary(final, startedAt));
  else if (interrupted && (!final || final.join.waitingFor === 'producers-missing'))
    lines.push(`Run ${runId} stopped before the run started: Ctrl-C came while its processes were starting.`);
  else if (interrupted)
    lines.push(
      `Run ${runId} stopped before it joined (Ctrl-C while it waited for ${final?.join.waitingFor ?? '?'}).`,
    );
  else lines.push(`run ${runId} did not join (${final?.join.waitingFor ?? 'no status'})`);
  const loading = children.filter((_, i) => exits[i]!.code !== 0 && endedWell(exits[i]!, interrupted));
  if (loading.length > 0)
    lines.push(
      `  ${loading.map((c) => c.label).join(', ')} ${loading.length === 1 ? 'was' : 'were'} still loading: the Ctrl-C ended ${loading.length === 1 ? 'it' : 'them'} before ${loading.length === 1 ? 'it' : 'they'} could start work.`,
    );
  const failed = children.filter((_, i) => !endedWell(exits[i]!, interrupted));
  for (const [i, c] of children.entries())
    if (failed.includes(c)) {
      const { code, signal } = exits[i]!;
      lines.push(
        `  ${c.label} ${code !== null ? `exited with code ${code}` : `was killed by ${signal ?? 'a signal'}`}`,
      );
    }
  if (failed.length === 0 && loading.length === 0) lines.push(`All ${children.length} processes exited 0.`);
  else if (failed.length === 0)
    lines.push(`The other ${children.length - loading.length} processes exited 0.`);
  return lines.join('\n');
}
