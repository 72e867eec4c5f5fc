import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, startRedisServer, type RedisServerHandle } from '../shared/redis-server.js';

/** What survives a Redis crash: nothing, or an append-only file fsynced on every write or every second. */
export type Persistence = 'none' | 'aof-always' | 'aof-everysec';

const persistenceArgs: Record<Persistence, string[]> = {
  none: ['--appendonly', 'no', '--save', ''],
  'aof-always': ['--appendonly', 'yes', '--appendfsync', 'always', '--save', ''],
  'aof-everysec': ['--appendonly', 'yes', '--appendfsync', 'everysec', '--save', ''],
};

/**
 * A private redis-server on loopback that the harness may crash, pause and restart. Its data folder
 * outlives a crash (a restart on the same port reloads the append-only file); faults go only to the
 * one process this object started, by its PID.
 */
export class ChaosRedis {
  private handle: RedisServerHandle | undefined;

  private constructor(
    private readonly binary: string,
    readonly port: number,
    private readonly dir: string,
    private readonly args: string[],
  ) {}

  static async create(
    binary: string,
    opts: { persistence?: Persistence; args?: string[]; port?: number; start?: boolean } = {},
  ): Promise<ChaosRedis> {
    const port = opts.port ?? (await freePort());
    const dir = mkdtempSync(join(tmpdir(), 'conveyor-chaos-redis-'));
    const r = new ChaosRedis(binary, port, dir, [
      ...persistenceArgs[opts.persistence ?? 'none'],
      ...(opts.args ?? []),
    ]);
    if (opts.start !== false) await r.start();
    return r;
  }

  /** `redis://127.0.0.1:<port>` (no credentials; callers add them). */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.handle?.process.pid;
  }

  get running(): boolean {
    const p = this.handle?.process;
    return Boolean(p && p.exitCode === null && p.signalCode === null);
  }

  async start(): Promise<void> {
    // '--dir' after startRedisServer's own: the last one wins, so restarts share one data folder.
    this.handle = await startRedisServer({
      binary: this.binary,
      port: this.port,
      args: ['--dir', this.dir, ...this.args],
    });
  }

  /** SIGKILL: no shutdown save, no goodbye to clients — what a crash or an OOM kill looks like. */
  async crash(): Promise<void> {
    const h = this.handle;
    if (!h || !this.running) return;
    const exited = new Promise((r) => h.process.once('exit', r));
    h.process.kill('SIGKILL');
    await exited;
    await h.stop();
  }

  pause(): void {
    this.handle?.process.kill('SIGSTOP');
  }

  resume(): void {
    this.handle?.process.kill('SIGCONT');
  }

  async stop(): Promise<void> {
    if (this.handle && this.running) {
      this.resume();
      await this.handle.stop();
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
