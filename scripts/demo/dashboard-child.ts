import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import type { Env } from '../../shared/config.js';
import { freePort } from '../../shared/redis-server.js';
import { roleCommand, runningCompiled } from '../../shared/roles.js';
import { readableLogLine } from './progress.js';

export type DashboardChild = {
  /** The URL it printed, or null when it did not start (the demo goes on without it). */
  url: string | null;
  /** SIGTERM, then its exit code (SIGKILL after `graceMs`). Safe to call twice. */
  stop(graceMs?: number): Promise<number | null>;
};

/** Whether nothing listens on `port` (checked on all interfaces, which also collides with loopback-only listeners). */
export function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '0.0.0.0', () => srv.close(() => resolve(true)));
  });
}

/** `preferred` when free, else any free port. */
export async function pickPort(preferred: number): Promise<number> {
  if (preferred !== 0 && (await portIsFree(preferred))) return preferred;
  return freePort();
}

/**
 * Starts `npm run dashboard` as a child in its own process group, so a Ctrl-C meant for the run does not
 * stop it before the join summary is printed; the demo stops it itself. Resolves once it printed its URL.
 */
export async function startDashboardChild(
  env: Env,
  log: (line: string) => void,
  startTimeoutMs = 20_000,
): Promise<DashboardChild> {
  const { command, args } = roleCommand('dashboard', runningCompiled);
  const child = spawn(command, args, { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  createInterface({ input: child.stderr }).on('line', (line) => log(`[dashboard] ${readableLogLine(line)}`));
  const url = await new Promise<string | null>((resolve) => {
    const timer = setTimeout(() => resolve(null), startTimeoutMs);
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^dashboard: (http\S+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      } else log(`[dashboard] ${readableLogLine(line)}`);
    });
    void exited.then(() => {
      clearTimeout(timer);
      resolve(null);
    });
  });
  let stopping: Promise<number | null> | undefined;
  const stop = (graceMs = 10_000) =>
    (stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return exited;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try {
        return await exited;
      } finally {
        clearTimeout(timer);
      }
    })());
  if (url === null) await stop(2_000);
  return { url, stop };
}
