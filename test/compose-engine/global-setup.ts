import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { projectRoot } from '../../shared/roles.js';
import { ensureBaseImages } from './base-images.js';
import { mustRun } from './command.js';
import { ensureCompose } from './compose-cli.js';
import { ensureEngine } from './engine.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** DOCKER_HOST and DOCKER_CONFIG for the docker CLI the compose tests run. */
    dockerEnv: Record<string, string>;
  }
}

const say = (line: string) => process.stdout.write(`compose-engine: ${line}\n`);

/**
 * A Docker engine, Compose v2 and the project's image for the compose tests: an engine that answers
 * (DOCKER_HOST) or a private dockerd this setup starts and stops; stand-in base images when no
 * registry answers; then `docker compose build` of the unchanged Dockerfile. State (the private
 * engine's images, the Compose plugins) is kept in CONVEYOR_DOCKER_STATE (default: a folder under
 * the system's temp dir), so a second run skips what is already there.
 */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const stateDir = resolve(process.env.CONVEYOR_DOCKER_STATE ?? join(tmpdir(), 'conveyor-docker'));
  const started = Date.now();
  const since = () => `${((Date.now() - started) / 1000).toFixed(1)} s`;
  const compose = await ensureCompose(stateDir, process.env);
  say(`docker compose ${compose.version} (${since()})`);
  const engine = await ensureEngine(stateDir, compose.env);
  say(
    engine.pid === null
      ? `Docker engine ${engine.version} answers at ${engine.dockerHost ?? 'the default socket'}`
      : `started a private dockerd ${engine.version}, pid ${engine.pid}, at ${engine.dockerHost} (${since()})`,
  );
  const env: NodeJS.ProcessEnv = { ...compose.env };
  if (engine.dockerHost) env.DOCKER_HOST = engine.dockerHost;
  try {
    for (const image of await ensureBaseImages(stateDir, env)) say(`${image.name}: ${image.source}`);
    say(`base images ready (${since()})`);
    await mustRun(
      'docker',
      [
        'compose',
        '-f',
        'docker-compose.yml',
        '-f',
        'test/compose-engine/park-grafana.yml',
        'build',
        'dashboard',
      ],
      { env, cwd: projectRoot, timeoutMs: 900_000 },
    );
    say(`built conveyor:local from the Dockerfile (${since()})`);
  } catch (err) {
    await engine.stop();
    throw err;
  }
  const dockerEnv: Record<string, string> = {};
  if (env.DOCKER_HOST) dockerEnv.DOCKER_HOST = env.DOCKER_HOST;
  if (env.DOCKER_CONFIG) dockerEnv.DOCKER_CONFIG = env.DOCKER_CONFIG;
  project.provide('dockerEnv', dockerEnv);
  return async () => {
    await engine.stop();
    if (engine.pid !== null) say(`stopped the private dockerd (pid ${engine.pid})`);
  };
}
