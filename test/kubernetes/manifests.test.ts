import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1';
import {
  PodMonitor,
  PrometheusRule,
  ServiceMonitor,
} from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { Job } from 'kubernetes-models/batch/v1';
import { ConfigMap, Namespace, Secret, Service } from 'kubernetes-models/v1';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { projectRoot } from '../../shared/roles.js';
import {
  find,
  KUBERNETES_DIR,
  manifestFiles,
  readManifests,
  scaledObjectTrigger,
  type Manifest,
} from './manifests.js';

/** Each kind the recipe uses, by the schema it is checked against (Kubernetes, KEDA, Prometheus Operator). */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  'v1/Namespace': Namespace,
  'v1/Secret': Secret,
  'v1/ConfigMap': ConfigMap,
  'v1/Service': Service,
  'apps/v1/Deployment': Deployment,
  'apps/v1/StatefulSet': StatefulSet,
  'batch/v1/Job': Job,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'keda.sh/v1alpha1/ScaledObject': ScaledObject,
  'monitoring.coreos.com/v1/PodMonitor': PodMonitor,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

function validate(m: Manifest): void {
  const Model = MODELS[`${m.apiVersion}/${m.kind}`];
  if (!Model) throw new Error(`${m.file}: no schema here for ${m.apiVersion} ${m.kind}`);
  const data: Record<string, unknown> = { ...m };
  delete data.file;
  new Model(data as never).validate();
}

type Container = {
  name: string;
  env?: { name: string; value?: string }[];
  ports?: { name: string; containerPort: number }[];
  readinessProbe?: { httpGet?: { path: string; port: string } };
  livenessProbe?: { httpGet?: { path: string; port: string } };
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
};
type PodSpec = { terminationGracePeriodSeconds?: number; containers: Container[] };
const podOf = (m: Manifest) => (m.spec as { template: { spec: PodSpec } }).template.spec;

describe('the Kubernetes recipe (deploy/kubernetes)', () => {
  const manifests = readManifests();
  const config = find(manifests, 'ConfigMap', 'conveyor-config').data!;

  it('lists every manifest file in its kustomization, and nothing else', () => {
    const kustomization = parse(readFileSync(join(KUBERNETES_DIR, 'kustomization.yaml'), 'utf8')) as {
      resources: string[];
    };
    expect([...kustomization.resources].sort()).toEqual(manifestFiles());
  });

  it('every object validates against the Kubernetes, KEDA and Prometheus Operator schemas', () => {
    expect(manifests.length).toBeGreaterThan(10);
    for (const m of manifests)
      expect(() => validate(m), `${m.file}: ${m.kind} ${m.metadata.name}`).not.toThrow();
  });

  it('the schemas refuse a broken object (the check above can fail)', () => {
    const consumer = find(manifests, 'Deployment', 'conveyor-consumer');
    expect(() => validate({ ...consumer, spec: { ...consumer.spec, replicas: 'two' } })).toThrow(/replicas/);
    const so = find(manifests, 'ScaledObject', 'conveyor-consumer');
    expect(() => validate({ ...so, spec: { ...so.spec, cooldownPeriod: '2m' } })).toThrow(/cooldownPeriod/);
    expect(() => validate({ ...so, kind: 'ScaledThing' })).toThrow(/no schema/);
  });

  it('the PrometheusRule carries the same alert rules as deploy/prometheus/alerts.yml', () => {
    const alerts = parse(readFileSync(join(projectRoot, 'deploy/prometheus/alerts.yml'), 'utf8')) as unknown;
    expect(find(manifests, 'PrometheusRule', 'conveyor').spec).toEqual(alerts);
  });

  it('producers are a Job of PRODUCERS pods; probes name endpoints and ports that exist; stops outlast the grace', () => {
    const job = find(manifests, 'Job', 'conveyor-producers').spec as {
      completions: number;
      parallelism: number;
    };
    expect(job.completions).toBe(Number(config.PRODUCERS));
    expect(job.parallelism).toBe(job.completions);
    const graceMs = Number(config.SHUTDOWN_GRACE_MS);
    for (const [kind, name, port] of [
      ['Deployment', 'conveyor-consumer', 'metrics'],
      ['Job', 'conveyor-producers', 'metrics'],
      ['Deployment', 'conveyor-dashboard', 'http'],
    ] as const) {
      const pod = podOf(find(manifests, kind, name));
      // The force-exit timer fires 5 s after the grace; Kubernetes must not SIGKILL before that.
      expect(pod.terminationGracePeriodSeconds! * 1000, name).toBeGreaterThan(graceMs + 5_000);
      const [c] = pod.containers;
      expect(c!.ports?.map((p) => p.name)).toContain(port);
      expect(c!.readinessProbe?.httpGet).toEqual({ path: '/readyz', port });
      expect(c!.livenessProbe?.httpGet).toEqual({ path: '/healthz', port });
      expect(c!.resources?.requests).toHaveProperty('memory');
      expect(c!.resources?.requests).toHaveProperty('cpu');
    }
    // Consumers serve every run (no RUN_ID), so a join never ends a pod the Deployment would restart.
    const consumerEnv = podOf(find(manifests, 'Deployment', 'conveyor-consumer')).containers[0]!.env ?? [];
    expect(consumerEnv.map((e) => e.name)).not.toContain('RUN_ID');
    expect(config).not.toHaveProperty('RUN_ID');
  });

  it('KEDA scales the consumer Deployment from and to zero on the run metric the dashboard serves', () => {
    const so = find(manifests, 'ScaledObject', 'conveyor-consumer').spec as {
      scaleTargetRef: { name: string };
    };
    expect(so.scaleTargetRef.name).toBe('conveyor-consumer');
    const t = scaledObjectTrigger(manifests);
    expect(t.minReplicas).toBe(0);
    expect(t.query).toContain('conveyor_run_jobs');
    expect(t.query).toContain(`queue="${config.QUEUE}"`);
    const sm = find(manifests, 'ServiceMonitor', 'conveyor-dashboard').spec as {
      selector: { matchLabels: Record<string, string> };
    };
    const service = find(manifests, 'Service', 'conveyor-dashboard');
    expect((service.metadata as { labels?: Record<string, string> }).labels).toMatchObject(
      sm.selector.matchLabels,
    );
  });
});
