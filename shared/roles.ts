import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type Role = 'producer' | 'consumer' | 'dashboard';

const roleEntry: Record<Role, string> = {
  producer: 'producers/main',
  consumer: 'consumers/main',
  dashboard: 'dashboard/main',
};

/** The project root (the folder holding package.json), from this file's location, built or not. */
export const projectRoot = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) && dirname(dir) !== dir) dir = dirname(dir);
  return dir;
})();

/** True when this code runs compiled (dist/, the installed package), false under tsx from source. */
export const runningCompiled = fileURLToPath(import.meta.url).endsWith('.js');

/**
 * How to start a role as its own OS process: compiled JavaScript when `compiled` (what the image
 * runs), else the TypeScript source through tsx.
 */
export function roleCommand(role: Role, compiled: boolean): { command: string; args: string[] } {
  if (compiled)
    return { command: process.execPath, args: [resolve(projectRoot, 'dist', `${roleEntry[role]}.js`)] };
  return {
    command: process.execPath,
    args: ['--import', 'tsx', resolve(projectRoot, `${roleEntry[role]}.ts`)],
  };
}
