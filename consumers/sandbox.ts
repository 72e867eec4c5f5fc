import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { JobSource } from '../shared/jobs/registry.js';
import type { Logger } from '../shared/logger.js';

export type SandboxRequest =
  | {
      type: 'run';
      source: JobSource;
      name: string;
      payload: unknown;
      jobId: string;
      attempt: number;
      logLevel: string;
    }
  | { type: 'abort'; reason: string };

export type SandboxReply =
  { type: 'done'; value: unknown } | { type: 'error'; name: string; message: string };

/** Compiled (.js) or under tsx (.ts): the sandbox's entry has this module's extension. */
const entry = new URL(`./sandbox-main${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url);

/**
 * Runs one attempt in a fresh worker thread or child process. When `signal` aborts, the sandbox is
 * asked to abort its handler, and terminated if it has not finished `killAfterMs` later; the attempt
 * then rejects with the signal's reason. The sandbox is always gone when this settles.
 */
export function runSandboxed(
  kind: 'thread' | 'process',
  req: Extract<SandboxRequest, { type: 'run' }>,
  signal: AbortSignal,
  killAfterMs: number,
  log: Logger,
): Promise<unknown> {
  return new Promise<unknown>((resolve, reject) => {
    let settled = false;
    let killTimer: NodeJS.Timeout | undefined;
    let post: (m: SandboxRequest) => void;
    let kill: () => void;
    let child: ChildProcess | undefined;
    let worker: Worker | undefined;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(killTimer);
      signal.removeEventListener('abort', onAbort);
      kill();
      fn();
    };
    const onReply = (m: SandboxReply) =>
      finish(() => {
        if (m.type === 'done') resolve(m.value);
        else reject(Object.assign(new Error(m.message), { name: m.name }));
      });
    const onExit = (code: number | null) =>
      finish(() =>
        reject(
          signal.aborted
            ? (signal.reason as Error)
            : new Error(`the job's ${kind} sandbox exited (code ${code ?? 'none'}) before it finished`),
        ),
      );
    if (kind === 'thread') {
      // From source, a worker thread does not inherit tsx's loader: register it there first.
      worker = entry.pathname.endsWith('.ts')
        ? new Worker(
            `import('tsx/esm/api').then((tsx) => tsx.register()).then(() => import(${JSON.stringify(entry.href)}))`,
            { eval: true },
          )
        : new Worker(entry);
      const w = worker;
      post = (m) => w.postMessage(m);
      kill = () => void w.terminate();
      w.on('message', onReply);
      w.on('error', (err) => finish(() => reject(err)));
      w.on('exit', onExit);
    } else {
      child = fork(fileURLToPath(entry), [], {
        execArgv: process.execArgv,
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      const c = child;
      post = (m) => c.connected && c.send(m);
      kill = () => {
        if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      };
      c.on('message', (m) => onReply(m as SandboxReply));
      c.on('error', (err) => finish(() => reject(err)));
      c.on('exit', onExit);
    }
    function onAbort() {
      const reason = signal.reason instanceof Error ? signal.reason.message : 'aborted';
      post({ type: 'abort', reason });
      killTimer = setTimeout(() => {
        log.warn(
          { jobId: req.jobId, sandbox: kind, pid: child?.pid, threadId: worker?.threadId },
          'handler ignored the abort: terminating its sandbox',
        );
        finish(() => reject(signal.reason as Error));
      }, killAfterMs);
    }
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    post(req);
  });
}
