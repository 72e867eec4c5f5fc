import { parseArgs } from 'node:util';
import { CONTENDERS, type ContenderName } from './contenders.js';

export const SECTIONS = ['throughput', 'callers', 'latency', 'memory', 'scale'] as const;
export type Section = (typeof SECTIONS)[number];

export type BenchOptions = {
  profile: 'default' | 'quick' | 'smoke' | 'full';
  repeats: number;
  contenders: ContenderName[];
  sections: Section[];
  /** End-to-end runs: jobs with addBulk, and with one add at a time (producer-bound, so fewer). */
  jobs: number;
  singleJobs: number;
  concurrency: number[];
  /** Concurrencies for the one-at-a-time runs. */
  singleConcurrency: number[];
  modes: ('bulk' | 'single')[];
  /** The concurrent-callers row: jobs, and put callers in the one producer process. */
  callerJobs: number;
  putCallers: number;
  latencyJobs: number;
  latencyIntervalMs: number;
  memoryJobs: number;
  scaleJobs: number[];
  scaleConsumers: number[];
  scaleConcurrency: number;
  scaleContenders: ContenderName[];
  /** Scale runs with this many jobs use only the first consumer count (the 1M run). */
  bigJobs: number | null;
  out: string | null;
  docs: boolean;
  build: boolean;
  cpuProf: boolean;
};

export const USAGE = `Usage: npm run bench -- [options]

  --quick               small sizes, 1 repeat (under 2 minutes)
  --full                also the 1,000,000-job scale run
  --smoke               tiny sizes (harness check only, numbers meaningless)
  --repeats N           repeats of each end-to-end configuration (default 3; --quick 1)
  --jobs N              jobs per bulk-add run (default 50000)
  --single-jobs N       jobs per one-at-a-time run (default 10000)
  --scale-jobs N        jobs per scale run (default 100000)
  --contenders a,b      subset of ${CONTENDERS.join(',')}
  --sections a,b        subset of throughput,callers,latency,memory,scale
  --out FILE            JSON output (default bench/results/<time>.json)
  --docs                also write docs/bench-chart.svg and docs/bench-reference.json
  --cpu-prof            run every producer and consumer under node --cpu-prof (profiles next to the JSON)
  --no-build            skip compiling to dist/ (use what is there)
  -h, --help`;

function list<T extends string>(raw: string | undefined, allowed: readonly T[], flag: string): T[] | null {
  if (raw === undefined) return null;
  const items = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = items.filter((i) => !allowed.includes(i as T));
  if (bad.length || items.length === 0)
    throw new Error(`${flag}: unknown ${bad.join(', ') || '(empty)'}; choose from ${allowed.join(', ')}`);
  return items as T[];
}

/** A flag's whole number (at least 1), or null when the flag was not given. */
export function count(raw: string | undefined, flag: string): number | null {
  if (raw === undefined) return null;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`${flag} must be a whole number of at least 1 (got ${JSON.stringify(raw)})`);
  return n;
}

/** Flags → options; throws with a message naming the flag on bad input. Returns null for --help. */
export function parseBenchArgs(argv: string[]): BenchOptions | null {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: 'boolean', default: false },
      full: { type: 'boolean', default: false },
      smoke: { type: 'boolean', default: false },
      repeats: { type: 'string' },
      jobs: { type: 'string' },
      'single-jobs': { type: 'string' },
      'scale-jobs': { type: 'string' },
      contenders: { type: 'string' },
      sections: { type: 'string' },
      out: { type: 'string' },
      docs: { type: 'boolean', default: false },
      'cpu-prof': { type: 'boolean', default: false },
      'no-build': { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) return null;
  if ([values.quick, values.full, values.smoke].filter(Boolean).length > 1)
    throw new Error('--quick, --full and --smoke exclude each other');
  const profile = values.smoke ? 'smoke' : values.quick ? 'quick' : values.full ? 'full' : 'default';
  const small = profile === 'quick' || profile === 'smoke';
  const presets = {
    smoke: {
      jobs: 500,
      singleJobs: 200,
      concurrency: [10],
      singleConcurrency: [] as number[],
      modes: ['bulk'] as const,
      callerJobs: 500,
      latencyJobs: 20,
      memoryJobs: 1_000,
      scaleJobs: [500],
      scaleConsumers: [2],
    },
    quick: {
      jobs: 3_000,
      singleJobs: 1_000,
      concurrency: [1, 10, 100],
      singleConcurrency: [10],
      modes: ['bulk', 'single'] as const,
      callerJobs: 3_000,
      latencyJobs: 100,
      memoryJobs: 5_000,
      scaleJobs: [5_000],
      scaleConsumers: [2],
    },
    default: {
      jobs: 50_000,
      singleJobs: 10_000,
      concurrency: [1, 10, 100],
      singleConcurrency: [1, 10, 100],
      modes: ['bulk', 'single'] as const,
      callerJobs: 20_000,
      latencyJobs: 1_000,
      memoryJobs: 10_000,
      scaleJobs: [100_000],
      scaleConsumers: [1, 2, 4, 8],
    },
  };
  const p = presets[profile === 'full' ? 'default' : profile];
  const contenders = list(values.contenders, CONTENDERS, '--contenders') ?? [...CONTENDERS];
  return {
    profile,
    repeats: count(values.repeats, '--repeats') ?? (small ? 1 : 3),
    contenders,
    sections: list(values.sections, SECTIONS, '--sections') ?? [...SECTIONS],
    jobs: count(values.jobs, '--jobs') ?? p.jobs,
    singleJobs: count(values['single-jobs'], '--single-jobs') ?? p.singleJobs,
    concurrency: p.concurrency,
    singleConcurrency: p.singleConcurrency,
    modes: [...p.modes],
    callerJobs: p.callerJobs,
    putCallers: 100,
    latencyJobs: p.latencyJobs,
    latencyIntervalMs: 10,
    memoryJobs: p.memoryJobs,
    scaleJobs: [
      count(values['scale-jobs'], '--scale-jobs') ?? p.scaleJobs[0]!,
      ...(profile === 'full' ? [1_000_000] : []),
    ],
    scaleConsumers: p.scaleConsumers,
    scaleConcurrency: 10,
    scaleContenders: contenders.filter((c) => c === 'conveyor' || c === 'bullmq'),
    bigJobs: profile === 'full' ? 1_000_000 : null,
    out: values.out ?? null,
    docs: values.docs,
    build: !values['no-build'],
    cpuProf: values['cpu-prof'],
  };
}
