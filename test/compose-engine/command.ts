import { spawn } from 'node:child_process';

export type CommandResult = { code: number | null; stdout: string; stderr: string };

export type CommandOptions = {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Written to the command's stdin (then closed). */
  input?: string | Buffer;
  timeoutMs?: number;
};

/** Runs a command to its end and returns its exit code and output (never throws on a non-zero exit). */
export function runCommand(
  command: string,
  args: string[],
  opts: CommandOptions = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (b: Buffer) => out.push(b));
    child.stderr?.on('data', (b: Buffer) => err.push(b));
    const timer =
      opts.timeoutMs === undefined
        ? undefined
        : setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs).unref();
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`${command}: ${e.message}`));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Runs a command and returns its stdout; a non-zero exit throws with the command line and its stderr. */
export async function mustRun(command: string, args: string[], opts: CommandOptions = {}): Promise<string> {
  const r = await runCommand(command, args, opts);
  if (r.code !== 0) {
    const tail = (r.stderr || r.stdout).trim().split('\n').slice(-20).join('\n');
    throw new Error(`\`${[command, ...args].join(' ')}\` exited ${r.code}:\n${tail}`);
  }
  return r.stdout;
}
