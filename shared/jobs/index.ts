import { ConfigError } from '../config.js';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import type { AnyJobDefinition } from './define.js';
import { fetchJob } from './fetch-job.js';
import { JobRegistry } from './registry.js';
import { sleepJob } from './sleep-job.js';

export { defineJob, type JobDefinition, type JobContext, type AnyJobDefinition } from './define.js';
export { JobRegistry } from './registry.js';

export const builtinJobs: readonly AnyJobDefinition[] = [sleepJob, fetchJob];

function isDefinition(v: unknown): v is AnyJobDefinition {
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
      mod = (await import(url)) as Record<string, unknown>;
    } catch (err) {
      throw new ConfigError([
        `JOB_MODULES: cannot load "${spec}": ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`,
      ]);
    }
    const defs = Object.values(mod).filter(isDefinition);
    if (defs.length === 0)
      throw new ConfigError([`JOB_MODULES: "${spec}" exports no job definition (use defineJob).`]);
    for (const d of defs) registry.register(d);
  }
  return registry;
}
