import type { Logger } from './logger.js';

/**
 * One cleanup step. `timeoutMs` overrides the closer's bound; null: unbounded, for a step that must
 * wait as long as it takes (say why where you use it).
 */
export type ShutdownStep = { name: string; run: () => unknown; timeoutMs?: number | null };

/**
 * Runs cleanup steps in order. Each is bounded by its `timeoutMs` (else `stepTimeoutMs`) and isolated:
 * a step that throws or times out is logged and the next one runs, as BullMQ's Worker.close does, so
 * one step that cannot finish (a Redis that does not answer) never holds back the others.
 */
export async function runSteps(
  steps: readonly ShutdownStep[],
  log: Logger,
  stepTimeoutMs: number,
): Promise<void> {
  for (const step of steps) {
    const timeoutMs = step.timeoutMs === undefined ? stepTimeoutMs : step.timeoutMs;
    let timer: NodeJS.Timeout | undefined;
    try {
      const run = Promise.resolve().then(step.run);
      await (timeoutMs === null
        ? run
        : Promise.race([
            run,
            new Promise((_, reject) => {
              timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
            }),
          ]));
    } catch (err) {
      log.warn(
        { step: step.name, err: err instanceof Error ? err.message : String(err) },
        'shutdown step failed',
      );
    } finally {
      clearTimeout(timer);
    }
  }
}

/** runSteps, once: a second call gets the same promise. */
export function makeCloser(
  steps: () => ShutdownStep[],
  log: Logger,
  stepTimeoutMs: number,
): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => (closing ??= runSteps(steps(), log, stepTimeoutMs));
}

/**
 * One Ctrl-C can arrive more than once: the terminal signals the whole process group, and a wrapper
 * in it (`npm run`, `tsx`) relays the same signal to its child a few milliseconds later. A repeat
 * within this window is that echo, not a person asking to force.
 */
export const SIGNAL_ECHO_MS = 500;

/**
 * Counts signals as a person sent them: 'first', then 'echo' for a repeat within `echoMs` of the
 * first, then 'again' for a real second signal.
 */
export function makeSignalCounter(
  echoMs = SIGNAL_ECHO_MS,
  now: () => number = Date.now,
): () => 'first' | 'echo' | 'again' {
  let firstAt: number | undefined;
  return () => {
    const t = now();
    if (firstAt === undefined) {
      firstAt = t;
      return 'first';
    }
    return t - firstAt < echoMs ? 'echo' : 'again';
  };
}

/**
 * Wires SIGTERM/SIGINT for a `main.ts`: the first signal starts a graceful stop, a second one (not
 * its echo, see SIGNAL_ECHO_MS) forces exit. A force-exit timer (unref'd, so it never keeps the process alive) backs up the graceful path.
 */
export function onShutdownSignal(
  proc: NodeJS.Process,
  log: Logger,
  graceMs: number,
  stop: (signal: string) => void,
): void {
  const count = makeSignalCounter();
  const handler = (signal: NodeJS.Signals) => {
    const which = count();
    if (which === 'echo') {
      log.debug({ signal }, 'the same signal again, relayed by a wrapper: ignored');
      return;
    }
    if (which === 'again') {
      log.warn({ signal }, 'second signal: exiting now');
      proc.exit(1);
    }
    log.info({ signal, graceMs }, 'stopping gracefully');
    setTimeout(() => {
      log.error({ graceMs }, 'graceful stop took too long: exiting');
      proc.exit(1);
    }, graceMs + 5_000).unref();
    stop(signal);
  };
  proc.on('SIGTERM', handler);
  proc.on('SIGINT', handler);
  // Ending with exit() once the loop runs dry, not by letting it: a natural exit tears the runtime
  // down with the signal handlers already gone, so a supervisor's SIGTERM in those milliseconds would
  // kill a process that had finished cleanly (exit code null instead of 0). Nothing is pending by now.
  proc.once('beforeExit', () => proc.exit());
}
