import { spawnSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { freePort } from '../../shared/redis-server.js';
import { exitOf, spawnTracked, type Spawned } from './processes.js';

const INSTALL_HINT =
  'Install it with `apt-get update && apt-get install -y prometheus` (Debian/Ubuntu; .ci/run does this).';

function findOnPath(name: string, path: string): string | null {
  for (const dir of path.split(delimiter).filter(Boolean)) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // keep looking
    }
  }
  return null;
}

/** The path of a Prometheus tool (`prometheus`, `promtool`) on PATH; throws saying how to install it. */
export function prometheusTool(name: 'prometheus' | 'promtool'): string {
  const found = findOnPath(name, process.env.PATH ?? '');
  if (!found) throw new Error(`No ${name} binary found on PATH. ${INSTALL_HINT}`);
  return found;
}

/** Runs promtool with `args` (and optional stdin); returns its exit code and output. */
export function promtool(args: string[], input?: string): { code: number | null; output: string } {
  const r = spawnSync(prometheusTool('promtool'), args, { input, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, output: `${r.stdout}${r.stderr}` };
}

export type PrometheusHandle = {
  url: string;
  process: Spawned;
  /** Runs an instant PromQL query; returns the result vector. */
  query(promql: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  stop(): Promise<void>;
};

/**
 * A private Prometheus on a free loopback port, scraping `targets` (host:port) every second, with its
 * own temporary storage. Resolves once it is ready to serve queries.
 */
export async function startPrometheus(targets: string[], extraConfig = ''): Promise<PrometheusHandle> {
  const binary = prometheusTool('prometheus');
  const dir = mkdtempSync(join(tmpdir(), 'conveyor-prometheus-'));
  const port = await freePort();
  const config = [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 1s',
    'scrape_configs:',
    '  - job_name: conveyor',
    '    static_configs:',
    `      - targets: [${targets.map((t) => `'${t}'`).join(', ')}]`,
    extraConfig,
  ].join('\n');
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const proc = spawnTracked(
    'prometheus',
    binary,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ],
    {},
  );
  const stop = async () => {
    if (proc.child.exitCode === null && proc.child.signalCode === null) {
      proc.child.kill('SIGTERM');
      await exitOf(proc, 15_000).catch(() => proc.child.kill('SIGKILL'));
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await proc.waitFor('Server is ready to receive web requests', 30_000);
  } catch (err) {
    await stop();
    throw err;
  }
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    process: proc,
    stop,
    query: async (promql) => {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
      const body = (await res.json()) as {
        status: string;
        error?: string;
        data?: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      if (body.status !== 'success' || !body.data)
        throw new Error(`query ${promql} failed: ${body.error ?? res.status}`);
      return body.data.result;
    },
  };
}
