import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildBenchApps } from '../../bench/build.js';
import { projectRoot } from '../../shared/roles.js';

/** Runs a bench script to its end; resolves with its exit code and everything it printed. */
async function runBench(args: string[]): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
    cwd: projectRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { code, output };
}

// A correctness check of the benchmark harness, not a benchmark: tiny sizes, no timing asserted.
describe('the bench scripts, at smoke sizes', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'conveyor-bench-'));
    dirs.push(dir);
    return dir;
  };
  // Compiled once for every script here (they run with --no-build).
  beforeAll(() => buildBenchApps(), 120_000);
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('npm run bench -- --smoke runs every contender as separate processes and writes a JSON result for each', async () => {
    const out = join(tempDir(), 'result.json');
    const { code, output } = await runBench([
      'bench/main.ts',
      '--smoke',
      '--no-build',
      '--sections',
      'throughput,memory',
      '--out',
      out,
    ]);
    expect(code, output).toBe(0);

    const result = JSON.parse(readFileSync(out, 'utf8')) as {
      summary: {
        throughput: { contender: string; jobsPerSec: { median: number } | null; failures: string[] }[];
      };
      runs: {
        throughput: { contender: string; ok: boolean; error?: string }[];
        memory: { contender: string; ok: boolean }[];
      };
    };
    const contenders = ['conveyor', 'bullmq', 'bee-queue', 'redis-list'];
    expect(result.runs.throughput.filter((r) => !r.ok)).toEqual([]);
    expect(result.summary.throughput.map((t) => t.contender).sort()).toEqual([...contenders].sort());
    for (const t of result.summary.throughput) expect(t.jobsPerSec?.median).toBeGreaterThan(0);
    expect(result.runs.memory.map((m) => [m.contender, m.ok])).toEqual(contenders.map((c) => [c, true]));
    expect(output).toContain('End-to-end jobs/s');
  }, 120_000);

  it('npm run bench:drain drains a waiting backlog with each contender and writes the figures', async () => {
    const out = join(tempDir(), 'drain.json');
    const { code, output } = await runBench([
      'bench/drain.ts',
      '--jobs',
      '300',
      '--repeats',
      '1',
      '--no-build',
      '--out',
      out,
    ]);
    expect(code, output).toBe(0);
    const result = JSON.parse(readFileSync(out, 'utf8')) as {
      runs: { contender: string; jobsPerSec: number; consumerCpuUsPerJob: number }[];
    };
    expect(result.runs.map((r) => r.contender).sort()).toEqual(['bullmq', 'conveyor']);
    for (const r of result.runs) expect(r.jobsPerSec).toBeGreaterThan(0);
    expect(output).toContain('conveyor ÷ BullMQ');
  }, 120_000);
});
