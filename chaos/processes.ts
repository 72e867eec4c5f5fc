import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { projectRoot, roleCommand, type Role } from '../shared/roles.js';

export type ExitInfo = { code: number | null; signal: NodeJS.Signals | null; at: number };

/** One OS process the harness started; faults are sent to `pid` and nothing else. */
export type ChaosProcess = {
  label: string;
  role: Role | 'script';
  pid: number;
  child: ChildProcess;
  startedAt: number;
  /** Everything written to stdout and stderr so far (also mirrored to `<dir>/<label>.log`). */
  output(): string;
  readonly exited: ExitInfo | null;
  exit: Promise<ExitInfo>;
  /** Resolves when the output contains `text`; rejects on timeout or when the process exits first. */
  waitFor(text: string | RegExp, timeoutMs?: number): Promise<void>;
  signal(sig: NodeJS.Signals): void;
};

/** Starts and tracks the processes of one scenario, and makes sure none outlives it. */
export class ProcessGroup {
  readonly all: ChaosProcess[] = [];
  private seq = 0;

  constructor(private readonly logDir: string) {}

  spawnRole(role: Role, label: string, env: Record<string, string>): ChaosProcess {
    const { command, args } = roleCommand(role, false);
    return this.spawn(label, role, command, args, env);
  }

  spawn(
    label: string,
    role: Role | 'script',
    command: string,
    args: string[],
    env: Record<string, string>,
  ): ChaosProcess {
    const file = join(this.logDir, `${String(++this.seq).padStart(3, '0')}-${label}.log`);
    // Only what the scenario passes: no inherited REDIS_URL or credentials from the caller's shell.
    const child = spawn(command, args, {
      cwd: projectRoot,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', METRICS_ENABLED: 'false', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    const listeners = new Set<() => void>();
    const onData = (c: Buffer) => {
      const s = c.toString();
      out += s;
      appendFileSync(file, s);
      listeners.forEach((l) => l());
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    let exited: ExitInfo | null = null;
    const exit = new Promise<ExitInfo>((resolve) =>
      child.once('exit', (code, signal) => {
        exited = { code, signal, at: Date.now() };
        listeners.forEach((l) => l());
        resolve(exited);
      }),
    );
    const p: ChaosProcess = {
      label,
      role,
      pid: child.pid ?? -1,
      child,
      startedAt: Date.now(),
      output: () => out,
      get exited() {
        return exited;
      },
      exit,
      signal: (sig) => {
        if (exited === null) child.kill(sig);
      },
      waitFor: (text, timeoutMs = 60_000) =>
        new Promise<void>((resolve, reject) => {
          const matches = () => (typeof text === 'string' ? out.includes(text) : text.test(out));
          const timer = setTimeout(
            () => done(new Error(`${label}: no "${String(text)}" within ${timeoutMs} ms`)),
            timeoutMs,
          );
          const check = () => {
            if (matches()) done();
            else if (exited)
              done(
                new Error(
                  `${label} exited (${exited.code ?? exited.signal}) before printing "${String(text)}"`,
                ),
              );
          };
          const done = (err?: Error) => {
            clearTimeout(timer);
            listeners.delete(check);
            if (err) reject(err);
            else resolve();
          };
          listeners.add(check);
          check();
        }),
    };
    this.all.push(p);
    return p;
  }

  live(role?: Role): ChaosProcess[] {
    return this.all.filter((p) => p.exited === null && (role === undefined || p.role === role));
  }

  /** Waits for every process to exit; after `timeoutMs` the stragglers are SIGKILLed and named. */
  async settle(timeoutMs: number): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.live().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const stragglers = this.live();
    for (const p of stragglers) p.signal('SIGKILL');
    await Promise.all(stragglers.map((p) => p.exit));
    return stragglers.map((p) => p.label);
  }

  /** Every process's output, for greps (secrets, "run joined"...). */
  outputs(): string {
    return this.all.map((p) => p.output()).join('\n');
  }
}
