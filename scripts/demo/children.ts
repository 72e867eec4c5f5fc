import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { Env } from '../../shared/config.js';
import { roleCommand, runningCompiled, type Role } from '../../shared/roles.js';
import type { ChildExit } from './end-summary.js';
import { readableLogLine } from './progress.js';

/** A producer or consumer process the demo started, and its exit once it comes. */
export type DemoChild = { label: string; child: ChildProcess; exit: Promise<ChildExit> };

/**
 * Starts `<role>-<index>` (its id `<runId>-<role>-<index>`), its log lines printed as a person reads
 * them, each prefixed with its label.
 */
export function launchChild(
  role: Role,
  index: number,
  childEnv: Env,
  runId: string,
  print: (line: string) => void,
): DemoChild {
  const label = `${role}-${index}`;
  const { command, args } = roleCommand(role, runningCompiled);
  const child = spawn(command, args, {
    env: { ...childEnv, [`${role.toUpperCase()}_ID`]: `${runId}-${label}` },
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: the terminal's Ctrl-C reaches only the demo, which then sends each
    // child one SIGTERM (two signals would read as "force").
    detached: true,
  });
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => print(`[${label}] ${readableLogLine(line)}`));
  }
  const exit = new Promise<ChildExit>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { label, child, exit };
}

/** Every consumer, then every producer, as the demo's settings ask. */
export function launchChildren(
  counts: { consumers: number; producers: number },
  childEnv: Env,
  runId: string,
  print: (line: string) => void,
): DemoChild[] {
  const children: DemoChild[] = [];
  for (let i = 1; i <= counts.consumers; i++)
    children.push(launchChild('consumer', i, childEnv, runId, print));
  for (let i = 1; i <= counts.producers; i++)
    children.push(launchChild('producer', i, childEnv, runId, print));
  return children;
}

/** Sends `signal` to each child still running. */
export function signalChildren(children: readonly DemoChild[], signal: NodeJS.Signals): void {
  for (const { child } of children) if (child.exitCode === null) child.kill(signal);
}

/** SIGKILL for any child neither exited nor killed yet: the demo leaves no process behind. */
export function killLeftChildren(children: readonly DemoChild[]): void {
  for (const { child } of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
