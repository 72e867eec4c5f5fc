import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import { projectRoot } from '../../shared/roles.js';
import { mustRun, runCommand } from './command.js';

/** Debian's CA bundle on the host: behind a TLS-intercepting proxy it also holds the proxy's CA. */
const HOST_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';
const DEBIAN_BASE = 'conveyor-standin/debian:bookworm';
const NODE_FILES = ['usr/bin/node', 'usr/bin/npm', 'usr/bin/npx', 'usr/lib/node_modules/npm'];

/** The base images the project's Dockerfile and docker-compose.yml name. */
export function projectBaseImages(): { node: string; others: string[] } {
  const dockerfile = readFileSync(resolve(projectRoot, 'Dockerfile'), 'utf8');
  const node = /^ARG NODE_IMAGE=(\S+)$/m.exec(dockerfile)?.[1];
  if (!node) throw new Error('Dockerfile: no `ARG NODE_IMAGE=<image>` line');
  const compose = parse(readFileSync(resolve(projectRoot, 'docker-compose.yml'), 'utf8'), {
    merge: true,
  }) as { services: Record<string, { image?: string; build?: unknown }> };
  const others = new Set<string>();
  for (const s of Object.values(compose.services)) if (s.image && !s.build) others.add(s.image);
  return { node, others: [...others] };
}

type Recipe = (name: string, dir: string, env: NodeJS.ProcessEnv) => Promise<void>;

/**
 * Stand-ins for images a registry would give, built from Debian packages on a debootstrapped
 * bookworm. They exist only because this machine kind reaches no container registry.
 */
const RECIPES: { match: RegExp; build: Recipe }[] = [
  {
    // node: this machine's Node and npm, with the host's CA bundle for npm.
    match: /^node:/,
    build: async (name, dir, env) => {
      // The binary and npm as installed here (npm may have been upgraded in place since the package).
      await mustRun('tar', ['-C', '/', '-cf', join(dir, 'nodejs.tar'), ...NODE_FILES]);
      copyFileSync(HOST_CA_BUNDLE, join(dir, 'host-ca.pem'));
      writeFileSync(
        join(dir, 'Dockerfile'),
        [
          `FROM ${DEBIAN_BASE}`,
          'ADD nodejs.tar /',
          'COPY host-ca.pem /usr/local/share/host-ca.pem',
          // npm inside `docker build` goes through the same proxy as the host: trust its CA there only.
          'ENV npm_config_cafile=/usr/local/share/host-ca.pem',
          // The official image has a `node` user (uid 1000); our Dockerfile switches to it.
          'RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --create-home node',
          'CMD ["node"]',
        ].join('\n') + '\n',
      );
      await dockerBuild(name, dir, env);
    },
  },
  {
    // redis: Debian's redis-server, started like the official image does (protected mode off).
    match: /^redis:/,
    build: async (name, dir, env) => {
      writeFileSync(
        join(dir, 'entrypoint.sh'),
        [
          '#!/bin/sh',
          'set -e',
          'if [ "$1" = redis-server ]; then shift; exec redis-server "$@" --protected-mode no; fi',
          'exec "$@"',
        ].join('\n') + '\n',
        { mode: 0o755 },
      );
      writeFileSync(
        join(dir, 'Dockerfile'),
        [
          `FROM ${DEBIAN_BASE}`,
          'RUN apt-get update && apt-get install -y --no-install-recommends redis-server redis-tools mawk \\',
          ' && rm -rf /var/lib/apt/lists/* && mkdir -p /data',
          'COPY entrypoint.sh /usr/local/bin/docker-entrypoint.sh',
          'WORKDIR /data',
          'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
          'CMD ["redis-server"]',
        ].join('\n') + '\n',
      );
      await dockerBuild(name, dir, env);
    },
  },
  {
    // prometheus: Debian's prometheus (2.42), with the official image's entrypoint and data folder.
    match: /^prom\/prometheus:/,
    build: async (name, dir, env) => {
      writeFileSync(
        join(dir, 'Dockerfile'),
        [
          `FROM ${DEBIAN_BASE}`,
          'RUN apt-get update && apt-get install -y --no-install-recommends prometheus \\',
          ' && rm -rf /var/lib/apt/lists/* && mkdir -p /prometheus /etc/prometheus',
          'WORKDIR /prometheus',
          'ENTRYPOINT ["/usr/bin/prometheus"]',
          'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]',
        ].join('\n') + '\n',
      );
      await dockerBuild(name, dir, env);
    },
  },
];

async function dockerBuild(name: string, dir: string, env: NodeJS.ProcessEnv) {
  await mustRun('docker', ['build', '--quiet', '-t', name, dir], { env, timeoutMs: 600_000 });
}

const present = async (name: string, env: NodeJS.ProcessEnv) =>
  (await runCommand('docker', ['image', 'inspect', name], { env })).code === 0;

async function debianBase(stateDir: string, env: NodeJS.ProcessEnv) {
  if (await present(DEBIAN_BASE, env)) return;
  const root = join(stateDir, 'rootfs');
  rmSync(root, { recursive: true, force: true });
  await mustRun('debootstrap', ['--variant=minbase', 'bookworm', root, 'http://deb.debian.org/debian'], {
    env,
    timeoutMs: 600_000,
  });
  await mustRun('sh', ['-c', 'tar -C "$1" -c . | docker import - "$2"', 'sh', root, DEBIAN_BASE], {
    env,
    timeoutMs: 300_000,
  });
  rmSync(root, { recursive: true, force: true });
}

export type BaseImageReport = { name: string; source: 'present' | 'pulled' | 'stand-in' | 'missing' };

/**
 * Makes every base image the project names available: already there, pulled, or (no registry
 * answers) a local stand-in. Images with no stand-in (Grafana) are reported `missing`.
 */
export async function ensureBaseImages(stateDir: string, env: NodeJS.ProcessEnv): Promise<BaseImageReport[]> {
  const { node, others } = projectBaseImages();
  const report: BaseImageReport[] = [];
  const toBuild: { name: string; recipe: Recipe }[] = [];
  for (const name of [node, ...others]) {
    if (await present(name, env)) report.push({ name, source: 'present' });
    else if ((await runCommand('docker', ['pull', '--quiet', name], { env, timeoutMs: 300_000 })).code === 0)
      report.push({ name, source: 'pulled' });
    else {
      const recipe = RECIPES.find((r) => r.match.test(name));
      if (recipe) toBuild.push({ name, recipe: recipe.build });
      else report.push({ name, source: 'missing' });
    }
  }
  if (toBuild.length) {
    await debianBase(stateDir, env);
    await Promise.all(
      toBuild.map(async ({ name, recipe }) => {
        const dir = join(stateDir, 'standins', name.replace(/[^A-Za-z0-9_.-]/g, '_'));
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir, { recursive: true });
        await recipe(name, dir, env);
        report.push({ name, source: 'stand-in' });
      }),
    );
  }
  return report;
}
