import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConfigError } from '../config.js';
import { pathToFileURL } from 'node:url';
import type { AnyJobDefinition } from './define.js';
import { fetchJob } from './fetch-job.js';
import { explainLoadError } from './load-errors.js';
import { JobRegistry } from './registry.js';
import { runReportJob } from './run-report-job.js';
import { sleepJob } from './sleep-job.js';

export { defineJob, type JobDefinition, type JobContext, type AnyJobDefinition } from './define.js';
export { JobRegistry } from './registry.js';

export const builtinJobs: readonly AnyJobDefinition[] = [sleepJob, fetchJob, runReportJob];

export function isDefinition(v: unknown): v is AnyJobDefinition {
  if (typeof v !== 'object' || v === null) return false;
  const d = v as Record<string, unknown>;
  return typeof d.name === 'string' && typeof d.handler === 'function' && typeof d.schema === 'object';
}

/**
 * The built-in job types plus every definition exported by the given modules (`JOB_MODULES`), so a
 * user's own types are registered the same way on producers and consumers.
 */
export async function loadJobRegistry(modules: readonly string[], cwd: string): Promise<JobRegistry> {
  const registry = new JobRegistry(builtinJobs);
  for (const spec of modules) {
    const url = spec.startsWith('.') || spec.startsWith('/') ? pathToFileURL(resolve(cwd, spec)).href : spec;
    let mod: Record<string, unknown>;
    try {
      mod = await importJobModule(spec, url, cwd);
    } catch (err) {
      if (err instanceof ConfigError) throw err;
      throw new ConfigError([`JOB_MODULES: cannot load "${spec}": ${explainLoadError(spec, url, cwd, err)}`]);
    }
    const defs = Object.values(mod).filter(isDefinition);
    if (defs.length === 0)
      throw new ConfigError([`JOB_MODULES: "${spec}" exports no job definition (use defineJob).`]);
    for (const d of defs) registry.register(d, { spec, url, cwd });
  }
  return registry;
}

const TYPESCRIPT = /\.[mc]?ts$/;

/**
 * Imports a job module. A TypeScript one needs a loader: under tsx (the repository's scripts) it
 * just works; with the compiled package, tsx installed where the command runs is registered on
 * first need, else the error says what to do.
 */
export async function importJobModule(
  spec: string,
  url: string,
  cwd: string,
): Promise<Record<string, unknown>> {
  try {
    return (await import(url)) as Record<string, unknown>;
  } catch (err) {
    if (!TYPESCRIPT.test(spec) || (err as NodeJS.ErrnoException).code !== 'ERR_UNKNOWN_FILE_EXTENSION')
      throw err;
  }
  let api: string;
  try {
    // tsx's ES module API, by its package's own exports map (require.resolve would pick the CommonJS one).
    const pkgFile = createRequire(join(cwd, 'package.json')).resolve('tsx/package.json');
    const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as {
      exports: Record<string, { import: { default: string } }>;
    };
    api = join(dirname(pkgFile), pkg.exports['./esm/api']!.import.default);
  } catch {
    throw new ConfigError([
      `JOB_MODULES: "${spec}" is TypeScript and tsx is not installed here: install it (npm install tsx), ` +
        'or compile the module to JavaScript and name the .js file.',
    ]);
  }
  const tsx = (await import(pathToFileURL(api).href)) as { register: () => unknown };
  tsx.register();
  // A fresh URL: the loader remembers the failed import of the plain one.
  return (await import(`${url}${url.includes('?') ? '&' : '?'}tsx`)) as Record<string, unknown>;
}
