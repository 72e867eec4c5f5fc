import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCommand } from './command.js';

export type Engine = {
  /** The DOCKER_HOST the tests use. */
  dockerHost: string | undefined;
  /** Set when this module started the engine: its PID, stopped by `stop`. */
  pid: number | null;
  version: string;
  stop(): Promise<void>;
};

const answers = async (env: NodeJS.ProcessEnv): Promise<string | null> => {
  const r = await runCommand('docker', ['version', '--format', '{{.Server.Version}}'], {
    env,
    timeoutMs: 10_000,
  }).catch(() => null);
  return r?.code === 0 ? r.stdout.trim() : null;
};

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * A Docker engine for the compose tests: the one DOCKER_HOST (or the default socket) names when it
 * answers; otherwise a private `dockerd` with its own data root, exec root, pidfile and socket under
 * `stateDir`, which `stop()` ends by its PID. Keeping `stateDir` keeps the images between runs.
 */
export async function ensureEngine(stateDir: string, env: NodeJS.ProcessEnv): Promise<Engine> {
  const existing = await answers(env);
  if (existing !== null)
    return { dockerHost: env.DOCKER_HOST, pid: null, version: existing, stop: () => Promise.resolve() };

  if (!existsSync('/usr/sbin/dockerd') && (await runCommand('sh', ['-c', 'command -v dockerd'])).code !== 0)
    throw new Error(
      'No Docker engine answers and dockerd is not installed (Debian: apt-get install docker.io); ' +
        'or point DOCKER_HOST at a running engine.',
    );
  mkdirSync(stateDir, { recursive: true });
  const socket = join(stateDir, 'docker.sock');
  const pidfile = join(stateDir, 'dockerd.pid');
  const logPath = join(stateDir, 'dockerd.log');
  // A dockerd of an earlier run that was not stopped (the process was killed): stop it first.
  if (existsSync(pidfile)) {
    const old = Number(readFileSync(pidfile, 'utf8'));
    if (old > 0 && alive(old)) await stopPid(old);
  }
  const log = openSync(logPath, 'a');
  const child = spawn(
    'dockerd',
    [
      '--data-root',
      join(stateDir, 'data'),
      '--exec-root',
      join(stateDir, 'exec'),
      '--pidfile',
      pidfile,
      '-H',
      `unix://${socket}`,
    ],
    { stdio: ['ignore', log, log], detached: true },
  );
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error('dockerd did not start');
  const dockerHost = `unix://${socket}`;
  const ownEnv = { ...env, DOCKER_HOST: dockerHost };
  let version: string | null = null;
  try {
    await waitFor(
      `the private dockerd to answer on ${socket} (log: ${logPath})`,
      async () => {
        if (!alive(pid)) throw new Error(`dockerd exited at start-up; see ${logPath}`);
        version = await answers(ownEnv);
        return version !== null;
      },
      60_000,
    );
  } catch (err) {
    await stopPid(pid);
    throw err;
  }
  return { dockerHost, pid, version: version ?? '?', stop: () => stopPid(pid) };
}

/** SIGTERM, then SIGKILL after 60 s; resolves once the process is gone. */
export async function stopPid(pid: number): Promise<void> {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  try {
    await waitFor(`dockerd (pid ${pid}) to exit`, () => !alive(pid), 60_000);
  } catch {
    process.kill(pid, 'SIGKILL');
    await waitFor(`dockerd (pid ${pid}) to exit after SIGKILL`, () => !alive(pid), 10_000);
  }
}
