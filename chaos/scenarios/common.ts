import type { ChaosProcess } from '../processes.js';
import type { Check, ScenarioContext, Session } from '../session.js';

/** The scaled-down figure in CI, the full one with `--full`. */
export const size = <T>(ctx: ScenarioContext, ci: T, full: T): T => (ctx.full ? full : ci);

/**
 * Waits for the run to join, then for every process to exit on its own. Returns joinedAt (null when
 * it never joined) and checks that nothing had to be killed and every exit code is as expected.
 */
export async function finishRun(
  s: Session,
  opts: { joinTimeoutMs: number; exitTimeoutMs?: number; expectExit?: (p: ChaosProcess) => boolean },
): Promise<{ joinedAt: number | null; checks: Check[] }> {
  const joinedAt = await s.waitForJoin(opts.joinTimeoutMs);
  const stragglers = await s.procs.settle(opts.exitTimeoutMs ?? 30_000);
  const expected = opts.expectExit ?? ((p) => p.exited?.code === 0);
  // Processes the scenario killed on purpose are judged by the scenario, not here.
  const bad = s.procs.all.filter(
    (p) => !stragglers.includes(p.label) && p.exited?.signal !== 'SIGKILL' && !expected(p),
  );
  return {
    joinedAt,
    checks: [
      [stragglers.length === 0, `still running after the join: ${stragglers.join(', ')}`],
      [
        bad.length === 0,
        `unexpected exit: ${bad.map((p) => `${p.label}=${p.exited?.code ?? p.exited?.signal}`).join(', ')}`,
      ],
    ],
  };
}
