import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

/** A child process the harness started, with its stdout JSON lines and exit time. */
export type BenchChild = {
  label: string;
  child: ChildProcess;
  pid: number;
  /** Parsed JSON lines from stdout, in order. */
  lines: Record<string, unknown>[];
  /** Last part of stderr, for error messages. */
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  exited: () => boolean;
  /** Resolves with the first line matching `pred` (rejects if the process exits first). */
  waitLine: (pred: (line: Record<string, unknown>) => boolean) => Promise<Record<string, unknown>>;
  onLine: (fn: (line: Record<string, unknown>) => void) => void;
};

const live = new Set<BenchChild>();

export function spawnChild(
  label: string,
  command: string,
  args: string[],
  env: Record<string, string>,
  cwd: string,
): BenchChild {
  const child = spawn(command, args, {
    cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (child.pid === undefined) throw new Error(`could not start ${label} (${command})`);
  const lines: Record<string, unknown>[] = [];
  const listeners = new Set<(line: Record<string, unknown>) => void>();
  let err = '';
  child.stderr.on('data', (c: Buffer) => {
    err = (err + c.toString()).slice(-4_000);
  });
  createInterface({ input: child.stdout }).on('line', (raw) => {
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      return; // a log line, not the protocol
    }
    if (typeof parsed !== 'object' || parsed === null) return;
    lines.push(parsed);
    for (const l of listeners) l(parsed);
  });
  let done = false;
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => {
    child.once('exit', (code, signal) => {
      const at = Date.now();
      done = true;
      live.delete(handle);
      // Let the last stdout lines arrive before anyone reads them.
      child.stdout.once('close', () => resolve({ code, signal, at }));
      if (child.stdout.closed) resolve({ code, signal, at });
    });
  });
  const handle: BenchChild = {
    label,
    child,
    pid: child.pid,
    lines,
    stderr: () => err,
    exit,
    exited: () => done,
    onLine: (fn) => void listeners.add(fn),
    waitLine: (pred) =>
      new Promise((resolve, reject) => {
        const found = lines.find(pred);
        if (found) return resolve(found);
        const fn = (line: Record<string, unknown>) => {
          if (pred(line)) {
            listeners.delete(fn);
            resolve(line);
          }
        };
        listeners.add(fn);
        void exit.then(({ code }) => {
          if (listeners.delete(fn))
            reject(new Error(`${label} exited (code ${code}) before the expected report:\n${err}`));
        });
      }),
  };
  live.add(handle);
  return handle;
}

/** Kills every child still running (used on errors and at the end). */
export async function killAll(): Promise<void> {
  const left = [...live];
  for (const c of left) c.child.kill('SIGKILL');
  await Promise.all(left.map((c) => c.exit));
}

/** Resident set size of a process in MB from /proc, or null when it is gone (or not Linux). */
export function rssMb(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

/**
 * CPU time (user + system) a process has used so far, in ms, from /proc/<pid>/stat; null when it is gone.
 * Fields 14 and 15 count clock ticks (100 per second on Linux).
 */
export function cpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return null;
  }
}

/**
 * Samples RSS and CPU time of `pids` every `everyMs`; `stop()` returns each pid's peak RSS and the
 * last CPU time seen. A process that exits between samples loses at most one interval of CPU time.
 */
export function sampleProcs(
  pids: number[],
  everyMs = 50,
): { stop: () => { rssMb: number[]; cpuMs: number[] } } {
  const peaks = pids.map(() => 0);
  const cpu = pids.map(() => 0);
  const tick = () =>
    pids.forEach((pid, i) => {
      const v = rssMb(pid);
      if (v !== null && v > peaks[i]!) peaks[i] = v;
      const c = cpuMs(pid);
      if (c !== null) cpu[i] = c;
    });
  tick();
  const timer = setInterval(tick, everyMs);
  return {
    stop: () => {
      clearInterval(timer);
      tick();
      return { rssMb: peaks, cpuMs: cpu };
    },
  };
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Rejects after `ms` with a message naming what took too long. */
export async function within<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${what} did not finish within ${Math.round(ms / 1000)} s`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
