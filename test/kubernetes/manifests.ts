import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { projectRoot } from '../../shared/roles.js';

export const KUBERNETES_DIR = join(projectRoot, 'deploy/kubernetes');

/** One object of a manifest file, as parsed. */
export type Manifest = {
  file: string;
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
} & Record<string, unknown>;

/** Every object in every `.yaml` file of deploy/kubernetes but the kustomization itself. */
export function readManifests(): Manifest[] {
  return manifestFiles().flatMap((file) =>
    parseAllDocuments(readFileSync(join(KUBERNETES_DIR, file), 'utf8')).map((doc) => {
      if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
      return { ...(doc.toJS() as Omit<Manifest, 'file'>), file } as Manifest;
    }),
  );
}

export function manifestFiles(): string[] {
  return readdirSync(KUBERNETES_DIR)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .sort();
}

export function find(manifests: readonly Manifest[], kind: string, name: string): Manifest {
  const m = manifests.find((x) => x.kind === kind && x.metadata.name === name);
  if (!m) throw new Error(`no ${kind} ${name} in deploy/kubernetes`);
  return m;
}

/** The KEDA ScaledObject's Prometheus trigger, as KEDA reads it. */
export function scaledObjectTrigger(manifests: readonly Manifest[]): {
  query: string;
  threshold: number;
  activationThreshold: number;
  minReplicas: number;
  maxReplicas: number;
  cooldownSeconds: number;
  pollingSeconds: number;
} {
  const so = find(manifests, 'ScaledObject', 'conveyor-consumer').spec as {
    minReplicaCount: number;
    maxReplicaCount: number;
    cooldownPeriod: number;
    pollingInterval: number;
    triggers: { type: string; metadata: Record<string, string> }[];
  };
  const trigger = so.triggers.find((t) => t.type === 'prometheus');
  if (!trigger) throw new Error('the ScaledObject has no prometheus trigger');
  return {
    query: trigger.metadata.query!,
    threshold: Number(trigger.metadata.threshold),
    activationThreshold: Number(trigger.metadata.activationThreshold ?? 0),
    minReplicas: so.minReplicaCount,
    maxReplicas: so.maxReplicaCount,
    cooldownSeconds: so.cooldownPeriod,
    pollingSeconds: so.pollingInterval,
  };
}
