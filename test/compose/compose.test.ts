import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { Redis } from 'ioredis';
import { Registry } from 'prom-client';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { loadConsumerConfig } from '../../consumers/config.js';
import { loadDashboardConfig } from '../../dashboard/config.js';
import { loadProducerConfig } from '../../producers/config.js';
import type { Env } from '../../shared/config.js';
import { queueShards } from '../../shared/keys.js';
import { createConsumerMetrics, createProducerMetrics } from '../../shared/metrics/process-metrics.js';
import { registerRunMetrics } from '../../shared/metrics/run-metrics.js';
import { parseRedisTarget } from '../../shared/redis-url.js';
import { projectRoot } from '../../shared/roles.js';
import { promtool } from '../helpers/prometheus-server.js';
import { redisUrl } from '../helpers/redis.js';

type Service = {
  image?: string;
  build?: unknown;
  command?: string[];
  container_name?: string;
  ports?: (string | { published?: unknown })[];
  environment?: Record<string, string>;
  deploy?: { replicas?: string | number };
  depends_on?: Record<string, { condition?: string; required?: boolean }>;
  healthcheck?: { test?: string[] };
  stop_grace_period?: string;
  restart?: string;
  volumes?: string[];
  profiles?: string[];
};
type Compose = { services: Record<string, Service>; volumes?: Record<string, unknown> };

const file = (path: string) => readFileSync(resolve(projectRoot, path), 'utf8');
const composeText = file('docker-compose.yml');
const raw = parse(composeText, { merge: true }) as Compose;

/**
 * Compose's variable interpolation (${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, $$), as
 * `docker compose config` applies it, so the tests check what a container really gets.
 */
function interpolate(text: string, env: Env): string {
  return text.replace(
    /\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}/g,
    (whole, name?: string, op?: string, arg?: string) => {
      if (whole === '$$') return '$';
      const v = env[name!];
      const unsetOrEmpty = v === undefined || v === '';
      if (op === ':-') return unsetOrEmpty ? arg! : v;
      if (op === '-') return v === undefined ? arg! : v;
      if (op === ':?' && unsetOrEmpty) throw new Error(`${name}: ${arg}`);
      if (op === '?' && v === undefined) throw new Error(`${name}: ${arg}`);
      return v ?? '';
    },
  );
}
const USER_ENV = { DASHBOARD_PASSWORD: 'a-password-for-the-test' };
const compose = parse(interpolate(composeText, USER_ENV), { merge: true }) as Compose;

/**
 * The variables of the documented one-command Redis Cluster run (`NAME=value ... docker compose up
 * --build`), read from the line that starts with `COMPOSE_PROFILES=cluster` (after `# ` in YAML).
 */
function clusterCommandEnv(text: string): Record<string, string> {
  const line = /^(?:#\s+)?(COMPOSE_PROFILES=cluster .*) docker compose up --build$/m.exec(text)?.[1];
  if (!line) throw new Error('no `COMPOSE_PROFILES=cluster ... docker compose up --build` line');
  return Object.fromEntries(
    line.split(' ').map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]),
  );
}
const CLUSTER_ENV = clusterCommandEnv(file('docs/operations.md'));
const clusterCompose = parse(interpolate(composeText, CLUSTER_ENV), { merge: true }) as Compose;
const CLUSTER_NODES = [1, 2, 3, 4, 5, 6].map((n) => `redis-node-${n}`);
const CLUSTER_SERVICES = [...CLUSTER_NODES, 'redis-cluster-create'];
const APP_ROLES = {
  producer: loadProducerConfig,
  consumer: loadConsumerConfig,
  dashboard: loadDashboardConfig,
} as const;

/** The variables a config loader reads, found by handing it an environment that records each lookup. */
function keysRead(load: (env: Env) => unknown): Set<string> {
  const seen = new Set<string>();
  const env = new Proxy(
    {},
    {
      get: (_t, key) => {
        if (typeof key === 'string') seen.add(key);
        return undefined;
      },
    },
  );
  try {
    load(env);
  } catch {
    // only the lookups matter
  }
  return seen;
}

const durationMs = (d: string) => {
  const m = /^(\d+)(ms|s|m)$/.exec(d);
  if (!m) throw new Error(`unsupported duration ${d}`);
  return Number(m[1]) * { ms: 1, s: 1_000, m: 60_000 }[m[2] as 'ms' | 's' | 'm'];
};

describe('docker-compose.yml', () => {
  it('is valid against the Compose Specification schema', () => {
    // The schema as dclint ships it (the compose-spec project's compose-spec.json).
    const schemaPath = join(
      dirname(createRequire(import.meta.url).resolve('dclint/package.json')),
      'schemas',
      'compose.schema.json',
    );
    // validateSchema off: Ajv does not bundle the draft-07 meta-schema under the https id the file names.
    const ajv = new Ajv({ allErrors: true, strict: false, validateFormats: false, validateSchema: false });
    const validate = ajv.compile(JSON.parse(readFileSync(schemaPath, 'utf8')) as object);
    for (const doc of [raw, compose, clusterCompose]) {
      const ok = validate(doc);
      expect(ok ? [] : validate.errors?.map((e) => `${e.instancePath} ${e.message}`)).toEqual([]);
    }
  });

  it('gives each app service only variables its config parser reads, with values it accepts', () => {
    for (const [role, load] of Object.entries(APP_ROLES)) {
      const given = compose.services[role]?.environment;
      expect(given, `${role} sets an environment`).toBeDefined();
      // Compose hands every value to the container as a string (YAML may have read `3` as a number).
      const env = Object.fromEntries(Object.entries(given!).map(([k, v]) => [k, String(v)]));
      const known = keysRead(load);
      expect(known.size).toBeGreaterThan(5);
      const unknown = Object.keys(env).filter((k) => !known.has(k));
      expect(unknown, `variables ${role} does not read`).toEqual([]);
      expect(() => load(env), `${role} accepts the compose values`).not.toThrow();
    }
  });

  it('runs the compiled roles from one image', () => {
    const entry = {
      producer: 'dist/producers/main.js',
      consumer: 'dist/consumers/main.js',
      dashboard: 'dist/dashboard/main.js',
    };
    // Producers and consumers take their container's hostname as a stable id (pids vary in containers).
    const ids = { producer: 'PRODUCER_ID', consumer: 'CONSUMER_ID' } as Record<string, string>;
    for (const [role, path] of Object.entries(entry)) {
      const s = compose.services[role]!;
      expect(s.command).toEqual(
        ids[role] ? ['sh', '-c', `export ${ids[role]}="$HOSTNAME"; exec node ${path}`] : ['node', path],
      );
      expect(s.image).toBe('conveyor:local');
      expect(s.build).toBeDefined();
    }
  });

  it('lets producers and consumers scale: no container_name, no host port, replicas from PRODUCERS/CONSUMERS', () => {
    for (const role of ['producer', 'consumer']) {
      const s = raw.services[role]!;
      expect(s.container_name).toBeUndefined();
      expect(s.ports ?? []).toEqual([]);
      expect(s.restart).toMatch(/^on-failure/);
    }
    expect(raw.services.producer!.deploy?.replicas).toBe('${PRODUCERS:-3}');
    expect(raw.services.consumer!.deploy?.replicas).toBe('${CONSUMERS:-2}');
    // Every producer must tell the run the same count, equal to the number of producer containers.
    expect(raw.services.producer!.environment?.PRODUCERS).toBe('${PRODUCERS:-3}');
    expect(raw.services.producer!.environment?.RUN_ID).toBe(raw.services.consumer!.environment?.RUN_ID);
    expect(compose.services.producer!.environment?.METRICS_PORT).toBe('9464');
    expect(compose.services.consumer!.environment?.METRICS_PORT).toBe('9464');
  });

  it('waits for a healthy Redis with AOF and noeviction, and gives the apps more grace than they take', () => {
    const redis = compose.services.redis!;
    expect(redis.healthcheck?.test).toEqual(['CMD', 'redis-cli', 'ping']);
    expect(redis.command).toEqual(
      expect.arrayContaining(['--appendonly', 'yes', '--maxmemory-policy', 'noeviction']),
    );
    expect(redis.volumes?.some((v) => v.endsWith(':/data'))).toBe(true);
    for (const role of Object.keys(APP_ROLES)) {
      const s = compose.services[role]!;
      expect(s.depends_on?.redis?.condition).toBe('service_healthy');
      expect(s.healthcheck?.test?.length).toBeGreaterThan(0);
      const graceMs = Number(s.environment?.SHUTDOWN_GRACE_MS);
      // The app force-exits 5 s after its grace period; the orchestrator must wait longer than that.
      expect(durationMs(s.stop_grace_period!)).toBeGreaterThan(graceMs + 5_000);
    }
    expect(compose.services.dashboard!.ports?.length).toBe(1);
  });

  it('needs DASHBOARD_PASSWORD only to start the dashboard, which then refuses to run open', () => {
    // Every compose command (logs, ps, down -v...) interpolates the whole file: it must not need it.
    const without = parse(interpolate(composeText, {}), { merge: true }) as Compose;
    const env = Object.fromEntries(
      Object.entries(without.services.dashboard!.environment!).map(([k, v]) => [k, String(v)]),
    );
    expect(() => loadDashboardConfig(env)).toThrow(/DASHBOARD_PASSWORD: required/);
    expect(() => loadDashboardConfig({ ...env, DASHBOARD_PASSWORD: 'sixteen-chars-xx' })).not.toThrow();
  });

  it('defaults RUN_ID to auto for every app service, so a second `up` starts the next run', () => {
    for (const role of Object.keys(APP_ROLES))
      expect(compose.services[role]!.environment?.RUN_ID, role).toBe('auto');
  });
});

/** The services `docker compose` runs with these profiles active: those without profiles, and those in one. */
function enabledServices(doc: Compose, active: string[]): string[] {
  return Object.keys(doc.services).filter((name) => {
    const profiles = doc.services[name]!.profiles;
    return !profiles || profiles.some((p) => active.includes(p));
  });
}

/** `depends_on` in its long form (the short form is a list of names, each required). */
function dependsOn(service: Service): Record<string, { condition?: string; required?: boolean }> {
  const deps = service.depends_on as unknown;
  if (Array.isArray(deps)) return Object.fromEntries((deps as string[]).map((d) => [d, {}]));
  return service.depends_on ?? {};
}

/** The argument after `flag` in a command list. */
function flagValue(command: string[] | undefined, flag: string): string | undefined {
  const i = command?.indexOf(flag) ?? -1;
  return i < 0 ? undefined : command![i + 1];
}

/** Slot ranges `redis-cli --cluster create` gives its masters, in order (clusterManagerCommandCreate). */
function redisCliSlotRanges(masters: number): [number, number][] {
  const perNode = Math.fround(16_384 / masters);
  const ranges: [number, number][] = [];
  let first = 0;
  let cursor = Math.fround(0);
  for (let i = 0; i < masters; i++) {
    let last = Math.round(Math.fround(cursor + perNode - 1));
    if (last > 16_384 || i === masters - 1) last = 16_383;
    if (last < first) last = first;
    ranges.push([first, last]);
    first = last + 1;
    cursor = Math.fround(cursor + perNode);
  }
  return ranges;
}

describe('docker-compose.yml: the Redis Cluster profile', () => {
  const create = clusterCompose.services['redis-cluster-create'];
  const script = create?.command?.[2] ?? '';
  const createLine =
    /^\s*redis-cli --cluster create ((?:\S+ )+)--cluster-replicas (\d+) --cluster-yes$/m.exec(script);
  const masters = CLUSTER_NODES.length / (1 + Number(createLine?.[2]));

  it('documents one command for a cluster run, the same in the docs and in the compose file', () => {
    expect(CLUSTER_ENV).toEqual({
      COMPOSE_PROFILES: 'cluster',
      REDIS_URL: 'redis+cluster://redis-node-1:6379,redis-node-2:6379,redis-node-3:6379',
      SHARDS: '3',
      DASHBOARD_PASSWORD: expect.any(String) as string,
    });
    const header = clusterCommandEnv(composeText);
    expect({ ...header, DASHBOARD_PASSWORD: '' }).toEqual({ ...CLUSTER_ENV, DASHBOARD_PASSWORD: '' });
  });

  it('puts the six nodes and the create service in profile `cluster` only, and leaves the default stack as it was', () => {
    const profiled = Object.keys(raw.services).filter((name) => raw.services[name]!.profiles);
    expect(profiled.sort()).toEqual([...CLUSTER_SERVICES].sort());
    for (const name of CLUSTER_SERVICES) expect(raw.services[name]!.profiles, name).toEqual(['cluster']);
    expect(enabledServices(compose, []).sort()).toEqual(
      ['redis', 'dashboard', 'producer', 'consumer', 'prometheus', 'grafana'].sort(),
    );
    expect(enabledServices(clusterCompose, ['cluster'])).toEqual(expect.arrayContaining(CLUSTER_SERVICES));
  });

  it('runs six Redis 7 cluster nodes with AOF and noeviction, each announcing its service name', () => {
    const dataVolumes = new Set<string>();
    for (const name of CLUSTER_NODES) {
      const node = clusterCompose.services[name]!;
      expect(node.image, name).toBe('redis:7-alpine');
      expect(node.command?.[0], name).toBe('redis-server');
      const flags = {
        '--cluster-enabled': 'yes',
        '--cluster-config-file': 'nodes.conf',
        '--cluster-node-timeout': '5000',
        '--cluster-announce-hostname': name,
        '--cluster-preferred-endpoint-type': 'hostname',
        '--appendonly': 'yes',
        '--maxmemory-policy': 'noeviction',
      };
      for (const [flag, value] of Object.entries(flags))
        expect(flagValue(node.command, flag), `${name} ${flag}`).toBe(value);
      expect(node.healthcheck?.test, name).toEqual(['CMD', 'redis-cli', 'ping']);
      expect(node.volumes, name).toEqual([`${name}-data:/data`]);
      dataVolumes.add(`${name}-data`);
      expect(node.restart, name).toBe('unless-stopped');
    }
    expect(dataVolumes.size).toBe(6);
    for (const v of dataVolumes) expect(raw.volumes, v).toHaveProperty([v]);
  });

  it('creates the cluster from all six nodes with one replica per master, once, after they are healthy', () => {
    expect(create?.image).toBe('redis:7-alpine');
    expect(create?.restart).toBe('no');
    expect(create?.depends_on).toEqual(
      Object.fromEntries(CLUSTER_NODES.map((n) => [n, { condition: 'service_healthy' }])),
    );
    expect(create?.command?.slice(0, 2)).toEqual(['sh', '-ec']);
    expect(
      createLine,
      'a `redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes` line',
    ).not.toBeNull();
    expect(createLine![1]!.trim().split(' ')).toEqual(CLUSTER_NODES.map((n) => `${n}:6379`));
    expect(createLine![2]).toBe('1');
    expect(masters).toBe(3);
    // Idempotent: when redis-node-1 already says cluster_state:ok, that branch does not create.
    expect(script).toMatch(/^info\(\) \{ redis-cli -h "\$1" cluster info \| tr -d '\\r'; \}$/m);
    const okBranch = /^if info redis-node-1 \| grep -qx 'cluster_state:ok'; then\n([\s\S]*?)^elif /m.exec(
      script,
    );
    expect(okBranch, 'an `if ... cluster_state:ok` branch before the create').not.toBeNull();
    expect(okBranch![1]).not.toMatch(/--cluster create/);
    expect(script.indexOf("cluster_state:ok'; then")).toBeLessThan(script.indexOf('--cluster create'));
    // Every `$` of the shell is written `$$`: a single one would be Compose's interpolation, not the shell's.
    expect(raw.services['redis-cluster-create']!.command![2]!.replace(/\$\$/g, '')).not.toContain('$');
    const syntax = spawnSync('sh', ['-n', '-c', script], { encoding: 'utf8' });
    expect(syntax.status, syntax.stderr).toBe(0);
  });

  it('makes the apps wait for the created cluster when the profile is on, and start without it when it is off', () => {
    for (const role of Object.keys(APP_ROLES)) {
      const deps = raw.services[role]!.depends_on;
      expect(deps?.redis, role).toEqual({ condition: 'service_healthy' });
      expect(deps?.['redis-cluster-create'], role).toEqual({
        condition: 'service_completed_successfully',
        required: false,
      });
    }
    // As Compose checks a project: a dependency on a service that is not running must be optional.
    for (const [doc, active] of [
      [compose, []],
      [clusterCompose, ['cluster']],
    ] as const) {
      const on = new Set(enabledServices(doc, [...active]));
      for (const name of on)
        for (const [dep, cfg] of Object.entries(dependsOn(doc.services[name]!)))
          expect(on.has(dep) || cfg.required === false, `${name} -> ${dep} with [${active.join()}]`).toBe(
            true,
          );
    }
  });

  it('gives the apps a REDIS_URL and SHARDS the config parsers accept, by default and for the cluster run', () => {
    for (const [doc, expected] of [
      [compose, { redisUrl: 'redis://redis:6379', shards: 1 }],
      [clusterCompose, { redisUrl: CLUSTER_ENV.REDIS_URL!, shards: masters }],
    ] as const) {
      for (const [role, load] of Object.entries(APP_ROLES)) {
        const env = Object.fromEntries(
          Object.entries(doc.services[role]!.environment!).map(([k, v]) => [k, String(v)]),
        );
        const config = load(env);
        expect({ redisUrl: config.redisUrl, shards: config.shards }, role).toEqual(expected);
        const target = parseRedisTarget(config.redisUrl);
        const hosts =
          target?.kind === 'cluster'
            ? target.nodes.map((n) => `${n.host}:${n.port}`)
            : [new URL(config.redisUrl).host];
        const redisServices = doc === compose ? ['redis'] : CLUSTER_NODES;
        for (const h of hosts)
          expect(
            redisServices.map((s) => `${s}:6379`),
            `${role} ${h}`,
          ).toContain(h);
        expect(target?.kind).toBe(doc === compose ? 'single' : 'cluster');
      }
    }
  });

  it('spreads the cluster run’s shards over the masters redis-cli creates, one each', () => {
    const config = loadConsumerConfig(
      Object.fromEntries(
        Object.entries(clusterCompose.services.consumer!.environment!).map(([k, v]) => [k, String(v)]),
      ),
    );
    const ranges = redisCliSlotRanges(masters);
    expect(ranges).toEqual([
      [0, 5460],
      [5461, 10922],
      [10923, 16383],
    ]);
    const owners = queueShards(config.queue, config.shards).map((s) =>
      ranges.findIndex(([low, high]) => s.slot >= low && s.slot <= high),
    );
    expect(owners.sort()).toEqual([0, 1, 2]);
  });
});

describe('Prometheus, alerts and Grafana for compose', () => {
  const promConfig = parse(file('deploy/prometheus/prometheus.yml')) as {
    scrape_configs: {
      job_name: string;
      dns_sd_configs?: { names: string[]; type: string; port: number }[];
    }[];
  };

  it('scrapes every producer and consumer replica through DNS service discovery', () => {
    for (const role of ['producer', 'consumer']) {
      const job = promConfig.scrape_configs.find((j) => j.job_name === role);
      expect(job?.dns_sd_configs).toEqual([
        expect.objectContaining({ names: [role], type: 'A', port: 9464 }),
      ]);
    }
    expect(compose.services.prometheus!.volumes).toContain('./deploy/prometheus:/etc/prometheus:ro');
  });

  it('passes promtool: config, rules, and the rules’ unit tests', () => {
    for (const args of [
      ['check', 'config', 'deploy/prometheus/prometheus.yml'],
      ['check', 'rules', 'deploy/prometheus/alerts.yml'],
      ['test', 'rules', 'deploy/prometheus/alerts.test.yml'],
    ]) {
      const r = promtool(args.map((a) => (a.startsWith('deploy/') ? resolve(projectRoot, a) : a)));
      expect(r.code, r.output).toBe(0);
    }
  });

  it('names only metrics that exist, in the alerts and the Grafana dashboard', async () => {
    const registry = new Registry();
    createProducerMetrics(registry, 'q');
    createConsumerMetrics(registry, 'q');
    const redis = new Redis(redisUrl(), { maxRetriesPerRequest: null });
    const runMetrics = registerRunMetrics(registry, { redis, queues: ['q'], leaseMs: 1_000 });
    const names = new Set<string>();
    for (const m of registry.getMetricsAsArray()) {
      const { name, type } = m as unknown as { name: string; type: string };
      names.add(name);
      if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    }
    await runMetrics.close();
    redis.disconnect();

    const dashboard = JSON.parse(file('deploy/grafana/dashboards/conveyor.json')) as {
      uid: string;
      panels: { targets: { expr: string; datasource: { uid: string } }[] }[];
    };
    expect(dashboard.panels.length).toBeGreaterThanOrEqual(8);
    const datasource = parse(file('deploy/grafana/provisioning/datasources/prometheus.yml')) as {
      datasources: { uid: string; url: string }[];
    };
    expect(datasource.datasources[0]?.url).toBe('http://prometheus:9090');
    for (const t of dashboard.panels.flatMap((p) => p.targets))
      expect(t.datasource.uid).toBe(datasource.datasources[0]?.uid);

    const used = (text: string) => [...text.matchAll(/\bconveyor_[a-z_]+\b/g)].map((m) => m[0]);
    const mentioned = [
      ...used(file('deploy/prometheus/alerts.yml')),
      ...dashboard.panels.flatMap((p) => p.targets.flatMap((t) => used(t.expr))),
    ];
    expect(mentioned.length).toBeGreaterThan(10);
    expect(mentioned.filter((n) => !names.has(n))).toEqual([]);
  });
});

describe('Dockerfile', () => {
  const dockerfile = file('Dockerfile');
  const runtime = dockerfile.slice(dockerfile.lastIndexOf('FROM '));

  it('builds with npm ci and tsc, and runs compiled JavaScript as a non-root user under an init', () => {
    expect(dockerfile).toMatch(/RUN npm ci\b/);
    expect(dockerfile).toMatch(/npm run build/);
    // The build starts from an empty dist/ (no stale output in the image or the package), then compiles.
    expect((JSON.parse(file('package.json')) as { scripts: Record<string, string> }).scripts.build).toMatch(
      /&& tsc -p tsconfig\.build\.json$/,
    );
    expect(runtime).toMatch(/^USER (?!root)\w+/m);
    expect(runtime).toMatch(/^ENTRYPOINT \["\/usr\/bin\/tini", "--"\]/m);
    expect(runtime).toMatch(/COPY --from=build \/app\/dist/);
    expect(runtime).not.toMatch(/tsx/);
  });

  it('keeps node_modules, dist and the tests out of the build context', () => {
    const ignored = file('.dockerignore').split('\n');
    for (const p of ['node_modules', 'dist', 'test', '.git']) expect(ignored).toContain(p);
  });
});
