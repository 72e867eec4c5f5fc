import { eventKinds, type FaultKind } from './menu.js';
import { seededRandom } from './random.js';

export type ProducerPlan = {
  /** PRODUCER_ID: a restart after a SIGKILL keeps it, as a container's would. */
  id: string;
  /** `library`: the soak's script around openProducer (concurrent puts); `cli`: producers/main.ts. */
  kind: 'library' | 'cli';
  /** Puts to make (library) or JOBS (cli). */
  jobs: number;
  /** KEEP_COMPLETED and KEEP_FAILED of its jobs: 0 under the keep-completed-0 variant. */
  keep: number;
  /** Seeds the producer's payloads and wave sizes. */
  seed: number;
  /** A CLI producer's jobs fail this many attempts (ATTEMPTS=2: 2 ends failed); a library one draws per job. */
  failAttempts: number;
};

export type RunPlan = {
  /** The run's tag in the soak (r01, r02...): every job and callback of the run carries it. */
  key: string;
  runId: string;
  /** The earlier run whose id this one takes again, once that run's retention has run out. */
  reuses: string | null;
  /** Planned start, seconds from the soak's start (later if the soak is at its limit of runs). */
  atS: number;
  producers: ProducerPlan[];
  /** A consumer with RUN_ID for this run too (besides the plain workers). */
  runConsumer: boolean;
  /** An onJoin callback (ON_JOIN_TYPE=soak-joined), which must run exactly once. */
  onJoin: boolean;
  retentionS: number;
  /** Each CLI producer's job duration (a library producer draws one per job). */
  jobMs: number;
};

export type FaultPlan = { index: number; atS: number; kind: FaultKind; seed: number };

export type SoakPlan = { seed: number; runs: RunPlan[]; faults: FaultPlan[] };

/** How runs are spaced and sized: small enough for two cores with faults on top. */
const RUN_EVERY_S: readonly [number, number] = [6, 14];
const FIRST_FAULT_S = 4;

/**
 * The soak's whole schedule from its seed: which runs start when, shaped how, and which fault comes
 * when. The same seed and options give the same plan; the moment-to-moment choices a fault makes
 * (which process, which job) are drawn from the fault's own seed against what is live then.
 */
export function makePlan(o: {
  seed: number;
  minutes: number;
  faults: readonly FaultKind[];
  faultEveryS: readonly [number, number];
}): SoakPlan {
  const rng = seededRandom(o.seed);
  const windowS = o.minutes * 60;
  const keep0 = o.faults.includes('keep-completed-0');
  const reuse = o.faults.includes('reuse-run-id');
  const prefix = `s${o.seed.toString(36)}`;

  const runs: RunPlan[] = [];
  const runRng = rng.fork('runs');
  // The last run starts early enough to finish inside the window on a quiet machine.
  for (let i = 0, atS = 0; atS < Math.max(windowS - 10, 1); i++, atS += runRng.int(...RUN_EVERY_S)) {
    const r = runRng.fork(i);
    const key = `r${String(i + 1).padStart(2, '0')}`;
    const predecessor = reuse && i >= 2 && r.chance(0.35) ? pickPredecessor(runs, r.int(0, i - 2)) : null;
    const count = predecessor ? predecessor.producers.length : r.int(1, 2);
    const producers: ProducerPlan[] = Array.from({ length: count }, (_, p) => {
      const kind = predecessor ? predecessor.producers[p]!.kind : r.chance(0.6) ? 'library' : 'cli';
      return {
        id: predecessor ? predecessor.producers[p]!.id : `p${p + 1}`,
        kind,
        jobs: kind === 'library' ? r.int(400, 1_500) : r.int(100, 300),
        keep: keep0 && r.chance(0.4) ? 0 : 1_000_000,
        seed: r.int(0, 2 ** 31),
        failAttempts: kind === 'cli' ? r.pick([0, 0, 0, 0, 0, 1, 1, 2]) : 0,
      };
    });
    runs.push({
      key,
      runId: predecessor ? predecessor.runId : `${prefix}-${key}`,
      reuses: predecessor?.key ?? null,
      atS,
      producers,
      runConsumer: r.chance(0.5),
      onJoin: r.chance(0.7),
      retentionS: r.int(2, 5),
      jobMs: r.int(2, 20),
    });
  }

  const faults: FaultPlan[] = [];
  const kinds = eventKinds(o.faults);
  const faultRng = rng.fork('faults');
  for (let atS = FIRST_FAULT_S; kinds.length > 0 && atS < windowS; atS += faultRng.int(...o.faultEveryS)) {
    faults.push({ index: faults.length, atS, kind: faultRng.pick(kinds), seed: faultRng.int(0, 2 ** 31) });
  }
  return { seed: o.seed, runs, faults };
}

/** The latest generation of the run id planned at `index` (a reuse waits for that one to retire). */
function pickPredecessor(runs: readonly RunPlan[], index: number): RunPlan {
  const runId = runs[index]!.runId;
  return runs.filter((r) => r.runId === runId).at(-1)!;
}
