import type { Logger } from './logger.js';

export type ShutdownStep = { name: string; run: () => Promise<unknown> };

/**
 * Runs cleanup steps in order, once: a second call gets the same promise. Each step is bounded by
 * `stepTimeoutMs` and its failure is logged, never allowed to stop the steps after it.
 */
export function makeCloser(
  steps: () => ShutdownStep[],
  log: Logger,
  stepTimeoutMs: number,
): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= (async () => {
      for (const step of steps()) {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            step.run(),
            new Promise((_, reject) => {
              timer = setTimeout(
                () => reject(new Error(`timed out after ${stepTimeoutMs} ms`)),
                stepTimeoutMs,
              );
            }),
          ]);
        } catch (err) {
          log.warn(
            { step: step.name, err: err instanceof Error ? err.message : String(err) },
            'shutdown step failed',
          );
        } finally {
          clearTimeout(timer);
        }
      }
    })();
    return closing;
  };
}

/**
 * Wires SIGTERM/SIGINT for a `main.ts`: the first signal starts a graceful stop, the second forces
 * exit. A force-exit timer (unref'd, so it never keeps the process alive) backs up the graceful path.
 */
export function onShutdownSignal(
  proc: NodeJS.Process,
  log: Logger,
  graceMs: number,
  stop: (signal: string) => void,
): void {
  let signalled = false;
  const handler = (signal: NodeJS.Signals) => {
    if (signalled) {
      log.warn({ signal }, 'second signal: exiting now');
      proc.exit(1);
    }
    signalled = true;
    log.info({ signal, graceMs }, 'stopping gracefully');
    setTimeout(() => {
      log.error({ graceMs }, 'graceful stop took too long: exiting');
      proc.exit(1);
    }, graceMs + 5_000).unref();
    stop(signal);
  };
  proc.on('SIGTERM', handler);
  proc.on('SIGINT', handler);
}
