import { spawn, type ChildProcess } from 'node:child_process';
import { roleCommand, projectRoot, type Role } from '../../shared/roles.js';

export type Spawned = {
  label: string;
  child: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output: () => string;
  stdout: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Resolves when the output contains `text` (rejects if the process exits first or on timeout). */
  waitFor: (text: string | RegExp, timeoutMs?: number) => Promise<void>;
};

const live = new Set<Spawned>();
const groups = new WeakSet<Spawned>();

/** Starts a conveyor role (or any command) as a real OS process, tracked so leaks fail the test. */
export function spawnRole(
  role: Role,
  env: Record<string, string>,
  opts: { compiled?: boolean; label?: string } = {},
): Spawned {
  const { command, args } = roleCommand(role, opts.compiled ?? false);
  return spawnTracked(opts.label ?? role, command, args, env);
}

export function spawnTracked(
  label: string,
  command: string,
  args: string[],
  env: Record<string, string>,
  /**
   * `group`: the process leads a process group of its own, as a shell job does, so a test can signal
   * the whole group the way a terminal's Ctrl-C does (`process.kill(-pid, 'SIGINT')`).
   */
  opts: { cwd?: string; group?: boolean } = {},
): Spawned {
  const child = spawn(command, args, {
    cwd: opts.cwd ?? projectRoot,
    detached: opts.group ?? false,
    // Metrics on a free loopback port unless a test asks for one: parallel processes never collide on 9464.
    env: {
      PATH: process.env.PATH ?? '',
      HOME: process.env.HOME ?? '',
      LOG_LEVEL: 'info',
      METRICS_PORT: '0',
      METRICS_HOST: '127.0.0.1',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let stdout = '';
  const listeners = new Set<() => void>();
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    stdout += c.toString();
    listeners.forEach((l) => l());
  });
  child.stderr.on('data', (c: Buffer) => {
    out += c.toString();
    listeners.forEach((l) => l());
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(spawned);
      resolve({ code, signal });
    }),
  );
  const spawned: Spawned = {
    label,
    child,
    output: () => out,
    stdout: () => stdout,
    exit,
    waitFor: (text, timeoutMs = 30_000) =>
      new Promise<void>((resolve, reject) => {
        const matches = () => (typeof text === 'string' ? out.includes(text) : text.test(out));
        if (matches()) return resolve();
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`${label}: no "${String(text)}" within ${timeoutMs} ms. Output:\n${out}`));
        }, timeoutMs);
        const check = () => {
          if (matches()) {
            clearTimeout(timer);
            listeners.delete(check);
            resolve();
          }
        };
        listeners.add(check);
        void exit.then(() => {
          if (!matches()) {
            clearTimeout(timer);
            listeners.delete(check);
            reject(new Error(`${label} exited before printing "${String(text)}". Output:\n${out}`));
          }
        });
      }),
  };
  live.add(spawned);
  if (opts.group) groups.add(spawned);
  return spawned;
}

/** Exit with a deadline: a process that does not exit in time fails the test (and is killed). */
export async function exitOf(
  p: Spawned,
  timeoutMs = 30_000,
): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.exit,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${p.label} did not exit within ${timeoutMs} ms. Output:\n${p.output()}`)),
          timeoutMs,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** For afterEach: kills anything a test left running and reports it, so a leak fails loudly. */
export async function killLeftovers(): Promise<string[]> {
  const leaked = [...live];
  for (const p of leaked) {
    if (groups.has(p)) {
      try {
        process.kill(-p.child.pid!, 'SIGKILL');
      } catch {
        // the group is gone already
      }
    }
    p.child.kill('SIGKILL');
  }
  await Promise.all(leaked.map((p) => p.exit));
  return leaked.map((p) => p.label);
}

/** The first match of `pattern`'s group 1 in the output, once printed. */
async function printed(p: Spawned, pattern: RegExp, timeoutMs = 30_000): Promise<string> {
  await p.waitFor(pattern, timeoutMs);
  return pattern.exec(p.output())![1]!;
}

/**
 * The port a process serves `/metrics` on, from its start-up log. Tests let each process bind its
 * own (METRICS_PORT=0): a port picked for it beforehand can be taken by any socket in the meantime.
 */
export async function metricsPortOf(p: Spawned): Promise<number> {
  return Number(await printed(p, /"metricsPort":(\d+)/));
}

/** The URL a dashboard process serves, from its start-up line (DASHBOARD_PORT=0 lets it bind its own). */
export function dashboardUrlOf(p: Spawned): Promise<string> {
  return printed(p, /^dashboard: (http:\/\/\S+)$/m);
}
