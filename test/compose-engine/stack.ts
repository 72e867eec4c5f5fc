import { resolve } from 'node:path';
import { inject } from 'vitest';
import { freePort } from '../../shared/redis-server.js';
import { projectRoot } from '../../shared/roles.js';
import type { RunStatus } from '../../shared/run/status.js';
import { pollUntil } from '../helpers/redis.js';
import { mustRun, runCommand, type CommandResult } from './command.js';

export const PASSWORD = 'compose-test-password';
const OVERRIDE = resolve(projectRoot, 'test/compose-engine/park-grafana.yml');

export type Container = {
  id: string;
  name: string;
  service: string;
  status: string;
  running: boolean;
  restarting: boolean;
  exitCode: number;
  /** The container's PID 1 (tini) as the host sees it. */
  pid: number;
  restartCount: number;
};

type Inspected = {
  Id: string;
  Name: string;
  RestartCount: number;
  State: { Status: string; Running: boolean; Restarting: boolean; ExitCode: number; Pid: number };
  Config: { Labels: Record<string, string> };
};

/**
 * One compose project of the project's docker-compose.yml (Grafana parked by the override), under a
 * Docker engine given by the suite's setup. Only the variables in `settings` reach Compose, plus
 * free published ports, so nothing of the caller's environment leaks in.
 */
export class Stack {
  private constructor(
    readonly project: string,
    readonly settings: Record<string, string>,
    readonly dashboardPort: number,
    readonly prometheusPort: number,
  ) {}

  static async create(project: string, settings: Record<string, string>): Promise<Stack> {
    return new Stack(project, settings, await freePort(), await freePort());
  }

  private env(withPassword: boolean): NodeJS.ProcessEnv {
    const docker = inject('dockerEnv');
    return {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      ...docker,
      ...this.settings,
      DASHBOARD_PUBLISHED_PORT: String(this.dashboardPort),
      PROMETHEUS_PUBLISHED_PORT: String(this.prometheusPort),
      ...(withPassword ? { DASHBOARD_PASSWORD: PASSWORD } : {}),
    };
  }

  /** `docker compose` with this project; without the dashboard password unless `withPassword`. */
  compose(args: string[], opts: { withPassword?: boolean; timeoutMs?: number } = {}): Promise<CommandResult> {
    return runCommand(
      'docker',
      [
        'compose',
        '-p',
        this.project,
        '-f',
        resolve(projectRoot, 'docker-compose.yml'),
        '-f',
        OVERRIDE,
        ...args,
      ],
      { env: this.env(opts.withPassword ?? false), cwd: projectRoot, timeoutMs: opts.timeoutMs ?? 300_000 },
    );
  }

  async mustCompose(args: string[], withPassword = true): Promise<string> {
    const r = await this.compose(args, { withPassword });
    if (r.code !== 0) throw new Error(`docker compose ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
    return r.stdout;
  }

  /** `up -d` (the image is built by the suite's setup), then waits for the dashboard to answer. */
  async up(...args: string[]): Promise<string> {
    const out = await this.mustCompose(['up', '-d', '--no-build', ...args]);
    await this.waitDashboard();
    return out;
  }

  async containers(service?: string): Promise<Container[]> {
    const ids = (await this.mustCompose(['ps', '-a', '-q', ...(service ? [service] : [])]))
      .split('\n')
      .filter(Boolean);
    if (!ids.length) return [];
    const out = await mustRun('docker', ['inspect', ...ids], { env: this.env(false) });
    return (JSON.parse(out) as Inspected[])
      .map((c) => ({
        id: c.Id,
        name: c.Name.replace(/^\//, ''),
        service: c.Config.Labels['com.docker.compose.service'] ?? '?',
        status: c.State.Status,
        running: c.State.Running,
        restarting: c.State.Restarting,
        exitCode: c.State.ExitCode,
        pid: c.State.Pid,
        restartCount: c.RestartCount,
      }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Waits until every container of `service` has exited for good (not restarting) and returns them. */
  waitExited(service: string, timeoutMs = 120_000): Promise<Container[]> {
    return pollUntil(
      `every ${service} container of ${this.project} to exit`,
      async () => {
        const cs = await this.containers(service);
        return cs.length && cs.every((c) => c.status === 'exited' && !c.restarting) ? cs : undefined;
      },
      timeoutMs,
      500,
    );
  }

  dashboard(path: string, withPassword = true): Promise<Response> {
    const headers: Record<string, string> = withPassword
      ? { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}` }
      : {};
    return fetch(`http://127.0.0.1:${this.dashboardPort}${path}`, {
      headers,
      signal: AbortSignal.timeout(10_000),
    });
  }

  /** Waits until the published dashboard answers /healthz (a request before it listens may hang). */
  async waitDashboard(timeoutMs = 60_000): Promise<void> {
    await pollUntil(
      `the dashboard of ${this.project} to answer`,
      async () => {
        const res = await fetch(`http://127.0.0.1:${this.dashboardPort}/healthz`, {
          signal: AbortSignal.timeout(2_000),
        });
        return res.ok ? true : undefined;
      },
      timeoutMs,
      500,
    );
  }

  async status(runId?: string): Promise<RunStatus> {
    const res = await this.dashboard(`/api/status${runId ? `?run=${runId}` : ''}`);
    if (!res.ok) throw new Error(`/api/status answered ${res.status}: ${await res.text()}`);
    return (await res.json()) as RunStatus;
  }

  waitJoined(runId: string, timeoutMs = 120_000): Promise<RunStatus> {
    let last: RunStatus | undefined;
    return pollUntil(
      `run ${runId} of ${this.project} to join`,
      async () => {
        last = await this.status(runId);
        return last.join.state === 'joined' ? last : undefined;
      },
      timeoutMs,
      500,
    ).catch((err: Error) => {
      throw new Error(`${err.message}; last status: ${JSON.stringify(last?.jobs)} ${last?.join.waitingFor}`);
    });
  }

  /** An instant PromQL query through Prometheus's HTTP API: the value of each series, by job. */
  async prom(query: string): Promise<{ metric: Record<string, string>; value: number }[]> {
    const url = `http://127.0.0.1:${this.prometheusPort}/api/v1/query?query=${encodeURIComponent(query)}`;
    const body = (await (await fetch(url, { signal: AbortSignal.timeout(10_000) })).json()) as {
      status: string;
      data: { result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    if (body.status !== 'success') throw new Error(`Prometheus refused ${query}`);
    return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  }

  /** Prometheus's active targets: job, instance, health. */
  async targets(): Promise<{ job: string; instance: string; health: string }[]> {
    const url = `http://127.0.0.1:${this.prometheusPort}/api/v1/targets?state=active`;
    const body = (await (await fetch(url, { signal: AbortSignal.timeout(10_000) })).json()) as {
      data: { activeTargets: { labels: Record<string, string>; health: string }[] };
    };
    return body.data.activeTargets.map((t) => ({
      job: t.labels.job ?? '?',
      instance: t.labels.instance ?? '?',
      health: t.health,
    }));
  }

  /** Logs of the whole project (for a failing test's message). */
  async logs(tail = 60): Promise<string> {
    const r = await this.compose(['logs', '--no-color', '--tail', String(tail)]);
    return r.stdout + r.stderr;
  }

  /** `down -v`, without the dashboard password (as docs/operations.md tells users to run it). */
  async down(): Promise<CommandResult> {
    return this.compose(['down', '-v', '--remove-orphans', '-t', '5']);
  }
}
