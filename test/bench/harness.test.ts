import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { projectRoot } from '../../shared/roles.js';

// A correctness check of the benchmark harness, not a benchmark: tiny sizes, no timing asserted.
describe('npm run bench -- --smoke', () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });

  it('runs every contender as separate processes and writes a JSON result for each', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'conveyor-bench-'));
    dirs.push(dir);
    const out = join(dir, 'result.json');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'bench/main.ts', '--smoke', '--sections', 'throughput,memory', '--out', out],
      {
        cwd: projectRoot,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
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
});
