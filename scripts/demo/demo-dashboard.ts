import type { Env } from '../../shared/config.js';
import { pickPort, startDashboardChild, type DashboardChild } from './dashboard-child.js';

/**
 * Starts the dashboard child on `preferredPort`, or a free port when that one is busy (said on
 * stdout); 0 asks for any free port. Resolves once the port is chosen, with the child still starting
 * (the demo launches its processes meanwhile).
 */
export async function startDemoDashboard(
  preferredPort: number,
  childEnv: Env,
  print: (line: string) => void,
  stdout: NodeJS.WriteStream,
): Promise<{ starting: Promise<DashboardChild> }> {
  const port = await pickPort(preferredPort);
  if (preferredPort !== 0 && port !== preferredPort)
    stdout.write(`Port ${preferredPort} is busy: the dashboard uses ${port}.\n`);
  return { starting: startDashboardChild({ ...childEnv, DASHBOARD_PORT: String(port) }, print) };
}

/** Where the dashboard is, and how long it stays up; or that it did not start. */
export function announceDashboard(
  dashboard: DashboardChild,
  keep: boolean,
  stdout: NodeJS.WriteStream,
): void {
  if (dashboard.url)
    stdout.write(
      `Dashboard: ${dashboard.url} (Bull Board at ${dashboard.url}/queues); ` +
        (keep
          ? 'it stays up after the join until Ctrl-C.\n'
          : 'it stops when the demo ends (DEMO_KEEP_DASHBOARD=true keeps it up after the join).\n'),
    );
  else stdout.write('The dashboard did not start (see its output above); going on without it.\n');
}

/**
 * After the run: keeps a started dashboard up until `untilSignal` when asked to (and the run was not
 * interrupted), then stops it. Returns its exit code (0 when it never started).
 */
export async function closeDashboard(
  dashboard: DashboardChild | undefined,
  opts: { keep: boolean; interrupted: boolean; untilSignal: () => Promise<void> },
  stdout: NodeJS.WriteStream,
): Promise<number | null> {
  if (!dashboard?.url) return 0;
  if (opts.keep && !opts.interrupted) {
    stdout.write(
      `The dashboard stays up at ${dashboard.url} (DEMO_KEEP_DASHBOARD=true): Ctrl-C to stop it.\n`,
    );
    await opts.untilSignal();
  }
  const code = await dashboard.stop();
  stdout.write('The dashboard has stopped.\n');
  if (code !== 0) stdout.write(`  the dashboard exited with code ${String(code)}\n`);
  return code;
}
