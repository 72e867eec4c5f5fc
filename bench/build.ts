import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { projectRoot } from '../shared/roles.js';
import { conveyorBuildDir } from './contenders.js';

/** Compiles the conveyor roles (tsconfig.build.json) and the bench-only contenders under dist/bench/. */
export function buildBenchApps(): void {
  const tsc = join(projectRoot, 'node_modules', 'typescript', 'bin', 'tsc');
  const steps = [
    ['-p', 'tsconfig.build.json', '--outDir', conveyorBuildDir],
    ['-p', join('bench', 'tsconfig.contenders.json')],
  ];
  for (const args of steps) {
    const r = spawnSync(process.execPath, [tsc, ...args], { cwd: projectRoot, stdio: 'inherit' });
    if (r.status !== 0) throw new Error(`tsc ${args.join(' ')} failed`);
  }
}
