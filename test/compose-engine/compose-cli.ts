import { copyFileSync, chmodSync, existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { mustRun, runCommand } from './command.js';

/** The oldest Compose that reads our file (`depends_on.required` needs 2.20). */
export const MIN_COMPOSE = [2, 20] as const;

const versionOf = async (env: NodeJS.ProcessEnv): Promise<string | null> => {
  const r = await runCommand('docker', ['compose', 'version', '--short'], { env }).catch(() => null);
  return r?.code === 0 ? r.stdout.trim().replace(/^v/, '') : null;
};

export const recentEnough = (version: string): boolean => {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > MIN_COMPOSE[0] || (major === MIN_COMPOSE[0] && minor >= MIN_COMPOSE[1]);
};

/**
 * Compose v2 (2.20+) and buildx as Docker CLI plugins. When `docker compose` already is recent
 * enough, nothing changes. Otherwise Debian trixie's `docker-compose` and `docker-buildx` packages are
 * fetched with `apt-get download` under a private apt configuration (its own sources list, state and
 * cache under `stateDir`; the machine's apt sources are not touched), unpacked, and their plugins put
 * in `<stateDir>/docker-config/cli-plugins`; the returned env sets DOCKER_CONFIG to it.
 */
export async function ensureCompose(
  stateDir: string,
  env: NodeJS.ProcessEnv,
): Promise<{ env: NodeJS.ProcessEnv; version: string }> {
  const have = await versionOf(env);
  if (have !== null && recentEnough(have)) return { env, version: have };

  const config = join(stateDir, 'docker-config');
  const plugins = join(config, 'cli-plugins');
  const ownEnv = { ...env, DOCKER_CONFIG: config };
  const cached = await versionOf(ownEnv);
  if (cached !== null && recentEnough(cached)) return { env: ownEnv, version: cached };

  const apt = join(stateDir, 'apt');
  rmSync(apt, { recursive: true, force: true });
  for (const d of ['lists/partial', 'cache/archives/partial', 'debs', 'root', 'parts'])
    mkdirSync(join(apt, d), { recursive: true });
  writeFileSync(join(apt, 'sources.list'), 'deb http://deb.debian.org/debian trixie main\n');
  writeFileSync(join(apt, 'status'), '');
  const options = [
    `Dir::Etc::SourceList=${join(apt, 'sources.list')}`,
    `Dir::Etc::SourceParts=${join(apt, 'parts')}`,
    `Dir::State=${apt}`,
    `Dir::State::Lists=${join(apt, 'lists')}`,
    `Dir::State::status=${join(apt, 'status')}`,
    `Dir::Cache=${join(apt, 'cache')}`,
    'Debug::NoLocking=1',
  ].flatMap((o) => ['-o', o]);
  await mustRun('apt-get', [...options, '-qq', 'update'], { env, timeoutMs: 300_000 });
  await mustRun('apt-get', [...options, '-qq', 'download', 'docker-compose', 'docker-buildx'], {
    env,
    cwd: join(apt, 'debs'),
    timeoutMs: 300_000,
  });
  for (const deb of readdirSync(join(apt, 'debs')).filter((f) => f.endsWith('.deb')))
    await mustRun('dpkg-deb', ['-x', join(apt, 'debs', deb), join(apt, 'root')]);
  mkdirSync(plugins, { recursive: true });
  for (const name of ['docker-compose', 'docker-buildx']) {
    const from = join(apt, 'root', 'usr', 'libexec', 'docker', 'cli-plugins', name);
    if (!existsSync(from)) throw new Error(`the trixie package did not contain ${from}`);
    copyFileSync(from, join(plugins, name));
    chmodSync(join(plugins, name), 0o755);
  }
  rmSync(apt, { recursive: true, force: true });
  const version = await versionOf(ownEnv);
  if (version === null || !recentEnough(version))
    throw new Error(`docker compose from trixie reports version ${version ?? 'none'}; need 2.20+`);
  return { env: ownEnv, version };
}
