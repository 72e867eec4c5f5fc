/** What the ScaledObject and its HPA decide, as KEDA documents it (AverageValue metric type). */
export type ScalingSpec = {
  threshold: number;
  activationThreshold: number;
  minReplicas: number;
  maxReplicas: number;
  /** Polls the query must read inactive before KEDA scales to minReplicas (cooldownPeriod / pollingInterval). */
  cooldownPolls: number;
  /** Polls over which the HPA keeps its highest recommendation when scaling down (stabilization window). */
  stabilizationPolls: number;
};

export type ScalingStep = { value: number; active: boolean; recommended: number; replicas: number };

/**
 * Replays KEDA and its HPA over a series of query results, one per polling interval:
 * - active while the value is above activationThreshold; from 0, the first active poll scales to 1;
 * - while active, the HPA recommends ceil(value / threshold) within [1, maxReplicaCount], and scales
 *   down only to the highest recommendation of its stabilization window;
 * - once inactive for cooldownPeriod, KEDA scales to minReplicaCount (0); until then the HPA holds
 *   at least 1.
 */
export function replayScaling(values: readonly number[], spec: ScalingSpec): ScalingStep[] {
  const steps: ScalingStep[] = [];
  let inactiveFor = Infinity;
  for (const value of values) {
    const active = value > spec.activationThreshold;
    inactiveFor = active ? 0 : inactiveFor + 1;
    // The HPA's recommendation (it never goes below 1 while KEDA keeps the target scaled up).
    const recommended = Math.min(spec.maxReplicas, Math.max(1, Math.ceil(value / spec.threshold)));
    const scaledUp = active || inactiveFor < spec.cooldownPolls;
    // Scale-down stabilization: the highest recommendation of the window, this poll included.
    const window = [...steps.slice(-(spec.stabilizationPolls - 1)), { recommended }].map(
      (s) => s.recommended,
    );
    const replicas = scaledUp ? Math.max(...window) : spec.minReplicas;
    steps.push({ value, active, recommended: scaledUp ? recommended : 0, replicas });
  }
  return steps;
}
