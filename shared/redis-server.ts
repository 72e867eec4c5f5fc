import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';

export type RedisServerHandle = {
  url: string;
  port: number;
  readonly process: ChildProcess;
  /** SIGTERM and wait for exit; removes its data folder. Safe to call twice. */
  stop(): Promise<void>;
};

/** Finds `redis-server` on PATH, or null. */
export function findRedisServer(path: string): string | null {
  for (const dir of path.split(delimiter)) {
    const candidate = join(dir, 'redis-server');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // keep looking
    }
  }
  return null;
}

export const NO_REDIS_SERVER_MESSAGE =
  'No redis-server binary found on PATH. Install one (Debian/Ubuntu: apt-get install redis-server; ' +
  'macOS: brew install redis), or point REDIS_URL at a running Redis, or use `docker compose up`.';

/** A free TCP port on loopback, chosen by the OS. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Starts a private `redis-server` on loopback on a free port (no persistence unless `args` ask for it),
 * resolving once it accepts connections.
 */
export async function startRedisServer(opts: {
  binary: string;
  port?: number;
  args?: string[];
}): Promise<RedisServerHandle> {
  const binary = opts.binary;
  const port = opts.port ?? (await freePort());
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-redis-'));
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    ...(opts.args ?? []),
  ];
  // Its own process group: a Ctrl-C meant for whoever started it (the demo) must not stop Redis under
  // the processes still finishing their work; the owner stops it with `stop()`.
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  const ready = new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Ready to accept connections')) resolve();
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.once('exit', (code) =>
      reject(new Error(`redis-server exited with code ${code} before it was ready:\n${output}`)),
    );
    child.once('error', reject);
  });
  await ready;
  child.stdout.removeAllListeners('data');
  child.stderr.removeAllListeners('data');
  child.stdout.resume();
  child.stderr.resume();
  let stopping: Promise<void> | undefined;
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    process: child,
    stop: () =>
      (stopping ??= new Promise<void>((resolve) => {
        const done = () => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        };
        if (child.exitCode !== null || child.signalCode !== null) return done();
        child.once('exit', done);
        child.kill('SIGTERM');
      })),
  };
}

export type RedisClusterHandle = {
  /** `redis+cluster://` URL naming every master. */
  url: string;
  nodes: RedisServerHandle[];
  stop(): Promise<void>;
};

/**
 * Starts a local Redis Cluster on loopback: `masters × (1 + replicas)` servers with cluster mode on,
 * joined by `redis-cli --cluster create`, resolving once every node reports `cluster_state:ok`.
 */
export async function startRedisCluster(opts: {
  binary: string;
  masters?: number;
  replicas?: number;
}): Promise<RedisClusterHandle> {
  const masters = opts.masters ?? 3;
  const replicas = opts.replicas ?? 0;
  const cli = join(dirname(opts.binary), 'redis-cli');
  const nodes: RedisServerHandle[] = [];
  const stop = async () => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  try {
    for (let i = 0; i < masters * (1 + replicas); i++) {
      nodes.push(
        await startRedisServer({
          binary: opts.binary,
          args: [
            '--cluster-enabled',
            'yes',
            '--cluster-node-timeout',
            '2000',
            '--cluster-config-file',
            'nodes.conf',
          ],
        }),
      );
    }
    const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
    await run(cli, [
      '--cluster',
      'create',
      ...addresses,
      '--cluster-replicas',
      String(replicas),
      '--cluster-yes',
    ]);
    const deadline = Date.now() + 30_000;
    for (const node of nodes) {
      for (;;) {
        const info = await run(cli, ['-p', String(node.port), 'cluster', 'info']);
        if (info.includes('cluster_state:ok')) break;
        if (Date.now() > deadline)
          throw new Error(`cluster node ${node.port} never reached cluster_state:ok:\n${info}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    // Slots are served once the state is ok, but replicas attach a moment later; a master killed
    // before its replica has synced would have no one to fail over to.
    for (const node of nodes) {
      for (;;) {
        const role = await run(cli, ['-p', String(node.port), 'info', 'replication']);
        if (role.includes('role:master') || role.includes('master_link_status:up')) break;
        if (Date.now() > deadline) throw new Error(`cluster replica ${node.port} never synced:\n${role}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    const replicasUp = async () =>
      (await run(cli, ['-p', String(nodes[0]!.port), 'cluster', 'nodes']))
        .split('\n')
        .filter((l) => / slave /.test(l)).length;
    while ((await replicasUp()) < masters * replicas) {
      if (Date.now() > deadline) throw new Error('cluster replicas never all attached');
      await new Promise((r) => setTimeout(r, 100));
    }
    return { url: `redis+cluster://${addresses.slice(0, masters).join(',')}`, nodes, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function run(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 30_000 }, (err, stdout, stderr) =>
      err
        ? reject(new Error(`${command} ${args.join(' ')} failed: ${stderr || err.message}`))
        : resolve(stdout),
    );
  });
}
