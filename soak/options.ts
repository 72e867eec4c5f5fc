import { parseArgs } from 'node:util';
import type { Env } from '../shared/config.js';
import { defaultMenu, FAULTS, isFaultKind, type FaultKind } from './menu.js';

export type SoakOptions = {
  /** Same seed, same schedule of runs and faults (SOAK_SEED or --seed; random when unset). */
  seed: number;
  /** How long runs are started and faults injected; the runs then finish and are checked. */
  minutes: number;
  /** The fault menu (--faults a,b,c). */
  faults: FaultKind[];
  /** A local 3-master Redis Cluster with SHARDS=3 instead of one Redis. */
  cluster: boolean;
  /** Where the JSON report goes; null: a file in the temp folder, named by the seed. */
  out: string | null;
  keepLogs: boolean;
  /** Runs in flight at once. */
  maxRuns: number;
  /** A run must join within this long after its producers ended and the last fault ended. */
  joinBoundS: number;
  /** Plain workers (consumers without RUN_ID) serving every run. */
  workers: number;
  /** Seconds between faults: drawn between these two. */
  faultEveryS: readonly [number, number];
};

export class SoakUsageError extends Error {
  override name = 'SoakUsageError';
}

export const SOAK_USAGE = `npm run soak [-- options]

  --seed N          the schedule's seed (or SOAK_SEED); printed at start, random when unset
  --minutes M       how long runs start and faults come (or SOAK_MINUTES; default 5)
  --faults a,b,c    the fault menu (or SOAK_FAULTS; default: all); --list names them
  --cluster         a local 3-master Redis Cluster, SHARDS=3 (its own menu)
  --out FILE        the JSON report (default: the temp folder, named by the seed)
  --keep-logs       keep every process's log and the ledgers (kept anyway on failure)
  --max-runs N      runs in flight at once (default 2)
  --workers N       plain workers without RUN_ID (default 2)
  --join-bound S    a run must join within S seconds of its producers and the last fault ending (default 60)
  --list            print the fault menu and exit
  -h, --help        print this and exit`;

/** What the command line asks for: the fault menu, this usage, or a soak. */
export type SoakRequest = { kind: 'list' } | { kind: 'help' } | { kind: 'soak'; options: SoakOptions };

/** The soak's settings from its flags and environment; flags win. Throws SoakUsageError saying what is wrong. */
export function parseSoakOptions(argv: readonly string[], env: Env, randomSeed: () => number): SoakRequest {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: {
        seed: { type: 'string' },
        minutes: { type: 'string' },
        faults: { type: 'string' },
        cluster: { type: 'boolean', default: false },
        out: { type: 'string' },
        'keep-logs': { type: 'boolean', default: false },
        'max-runs': { type: 'string' },
        workers: { type: 'string' },
        'join-bound': { type: 'string' },
        list: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new SoakUsageError(`${err instanceof Error ? err.message : String(err)}\n\n${SOAK_USAGE}`);
  }
  if (values.help) return { kind: 'help' };
  if (values.list) return { kind: 'list' };
  const cluster = values.cluster;
  const seedText = values.seed ?? env.SOAK_SEED;
  const seed =
    seedText === undefined || seedText === ''
      ? randomSeed()
      : number('--seed/SOAK_SEED', seedText, 0, 4_294_967_295, true);
  const menuText = values.faults ?? env.SOAK_FAULTS;
  const faults = menuText ? parseMenu(menuText, cluster) : defaultMenu(cluster);
  return {
    kind: 'soak',
    options: {
      seed,
      minutes: number('--minutes/SOAK_MINUTES', values.minutes ?? env.SOAK_MINUTES ?? '5', 0.1, 24 * 60),
      faults,
      cluster,
      out: values.out ?? null,
      keepLogs: values['keep-logs'],
      maxRuns: number('--max-runs', values['max-runs'] ?? '2', 1, 8, true),
      workers: number('--workers', values.workers ?? '2', 1, 6, true),
      joinBoundS: number('--join-bound', values['join-bound'] ?? '60', 5, 3_600),
      faultEveryS: [3, 8],
    },
  };
}

/** A comma-separated fault menu; unknown names, or kinds the topology cannot inject, are refused. */
export function parseMenu(text: string, cluster: boolean): FaultKind[] {
  const names = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const unknown = names.filter((n) => !isFaultKind(n));
  if (unknown.length)
    throw new SoakUsageError(
      `unknown fault kind(s) ${unknown.join(', ')}; \`npm run soak -- --list\` names them`,
    );
  const kinds = [...new Set(names)] as FaultKind[];
  const unsupported = kinds.filter((k) => (cluster ? !FAULTS[k].cluster : k === 'master-kill'));
  if (unsupported.length)
    throw new SoakUsageError(
      `${unsupported.join(', ')}: not available ${cluster ? 'with' : 'without'} --cluster`,
    );
  return kinds;
}

function number(what: string, text: string, min: number, max: number, whole = false): number {
  const v = Number(text);
  if (text.trim() === '' || !Number.isFinite(v) || (whole && !Number.isInteger(v)) || v < min || v > max)
    throw new SoakUsageError(
      `${what}: must be ${whole ? 'a whole number' : 'a number'} from ${min} to ${max} (got ${JSON.stringify(text)})`,
    );
  return v;
}
