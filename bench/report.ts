import type { ChartPanel } from './chart.js';
import type { MemoryRecord, RunRecord } from './measure.js';
import { percentile, ratio, spread, type Spread } from './stats.js';

export type ThroughputRun = RunRecord & { mode: 'bulk' | 'single'; repeat: number };
export type LatencyRun = RunRecord & { intervalMs: number; latencies?: number[] };
export type ScaleRun = RunRecord;
export type CallersRun = RunRecord & { putCallers: number; repeat: number };

export type Results = {
  throughput: ThroughputRun[];
  callers: CallersRun[];
  latency: LatencyRun[];
  memory: MemoryRecord[];
  scale: ScaleRun[];
};

const jobsPerSec = (runs: RunRecord[]) => spread(runs.filter((r) => r.ok).map((r) => r.jobsPerSec!));

export type Summary = ReturnType<typeof summarize>;

/** Where a configuration's time goes, per job: medians over the repeats that recorded it. */
function costOf(runs: RunRecord[]) {
  const ok = runs.filter((r) => r.ok && r.cpuUsPerJob);
  if (ok.length === 0) return null;
  const med = (f: (r: RunRecord) => number) => spread(ok.map(f))?.median ?? null;
  return {
    redisUs: med((r) => r.cpuUsPerJob!.redis),
    producerUs: med((r) => r.cpuUsPerJob!.producer),
    consumersUs: med((r) => r.cpuUsPerJob!.consumers),
    commands: med((r) => r.commandsPerJob ?? NaN),
  };
}

export function summarize(r: Results, contenders: string[], opts: { bigJobs: number | null }) {
  const throughput = [...new Set(r.throughput.map((t) => `${t.mode}|${t.concurrency}`))].flatMap((key) => {
    const [mode, conc] = key.split('|') as ['bulk' | 'single', string];
    const runs = r.throughput.filter((t) => t.mode === mode && t.concurrency === Number(conc));
    const bull = jobsPerSec(runs.filter((t) => t.contender === 'bullmq'))?.median;
    return contenders.map((name) => {
      const mine = runs.filter((t) => t.contender === name);
      const s = jobsPerSec(mine);
      return {
        mode,
        concurrency: Number(conc),
        contender: name,
        jobs: mine[0]?.jobs ?? 0,
        jobsPerSec: s,
        failures: mine.filter((t) => !t.ok).map((t) => t.error ?? '?'),
        ratioToBullmq: ratio(s?.median, bull),
        cost: costOf(mine),
      };
    });
  });

  const latencyOf = (name: string) => {
    const run = r.latency.find((l) => l.contender === name && l.ok);
    const v = run?.latencies ?? [];
    return {
      p50: percentile(v, 50),
      p95: percentile(v, 95),
      p99: percentile(v, 99),
      max: percentile(v, 100),
      samples: v.length,
    };
  };
  const bullLatency = latencyOf('bullmq');
  const latency = contenders
    .filter((n) => r.latency.some((l) => l.contender === n))
    .map((name) => {
      const l = latencyOf(name);
      const run = r.latency.find((x) => x.contender === name);
      return {
        contender: name,
        ...l,
        error: run?.ok ? undefined : run?.error,
        ratioP99ToBullmq: ratio(l.p99, bullLatency.p99),
      };
    });

  // RSS: idle before the producer starts; under load = peak during the busiest runs (bulk, highest concurrency).
  const topConc = Math.max(0, ...r.throughput.map((t) => t.concurrency));
  const rss = contenders.map((name) => {
    const runs = r.throughput.filter((t) => t.contender === name && t.ok);
    const loaded = runs.filter((t) => t.mode === 'bulk' && t.concurrency === topConc);
    return {
      contender: name,
      idleMb: roundMb(spread(runs.map((t) => Math.max(...t.rssIdleMb)))?.median),
      loadMb: spread(loaded.map((t) => Math.max(...t.rssPeakMb)))?.max ?? null,
      peakAnyRunMb: spread(runs.map((t) => Math.max(...t.rssPeakMb)))?.max ?? null,
    };
  });

  const bullMem = r.memory.find((m) => m.contender === 'bullmq' && m.ok);
  const memory = r.memory.map((m) => ({
    ...m,
    ratioToBullmq: ratio(m.usedPer10kWaiting, bullMem?.usedPer10kWaiting),
  }));

  const conveyorRuns = [...r.throughput, ...r.scale].filter((t) => t.contender === 'conveyor' && t.ok);
  const joins = {
    runs: conveyorRuns.length,
    lastDoneToJoinedMs: spread(
      conveyorRuns.flatMap((t) => (t.lastDoneToJoinedMs === undefined ? [] : [t.lastDoneToJoinedMs])),
    ),
    joinedToExitedMs: spread(
      conveyorRuns.flatMap((t) => (t.joinedToExitedMs === undefined ? [] : [t.joinedToExitedMs])),
    ),
  };

  const scaleKeys = [...new Set(r.scale.map((s) => `${s.jobs}|${s.consumers}`))];
  const scale = scaleKeys.flatMap((key) => {
    const [jobs, consumers] = key.split('|').map(Number) as [number, number];
    const runs = r.scale.filter((s) => s.jobs === jobs && s.consumers === consumers);
    const bull = jobsPerSec(runs.filter((s) => s.contender === 'bullmq'))?.median;
    return [...new Set(runs.map((s) => s.contender))].map((name) => {
      const mine = runs.filter((s) => s.contender === name);
      const s = jobsPerSec(mine);
      const ok = mine.filter((x) => x.ok);
      return {
        contender: name,
        jobs,
        consumers,
        concurrency: mine[0]?.concurrency ?? 0,
        jobsPerSec: s,
        redisAfterMb: spread(
          ok.flatMap((x) => (x.redisUsedAfterMb === undefined ? [] : [x.redisUsedAfterMb])),
        )?.median,
        rssPeakMb: spread(ok.map((x) => Math.max(...x.rssPeakMb)))?.max,
        ratioToBullmq: ratio(s?.median, bull),
        failures: mine.filter((x) => !x.ok).map((x) => x.error ?? '?'),
      };
    });
  });

  // Concurrent put callers: puts/s over the put window, end-to-end jobs/s, and each put's latency
  // (p50/p99 per run; the median of those over repeats).
  const callersOf = (name: string) => r.callers.filter((c) => c.contender === name && c.ok);
  const callerStats = (name: string) => {
    const runs = callersOf(name);
    return {
      putsPerSec: spread(runs.flatMap((c) => (c.putJobsPerSec === undefined ? [] : [c.putJobsPerSec]))),
      jobsPerSec: jobsPerSec(runs),
      putP50Ms: spread(runs.map((c) => percentile(c.putLatencies ?? [], 50) ?? NaN).filter((v) => !isNaN(v))),
      putP99Ms: spread(runs.map((c) => percentile(c.putLatencies ?? [], 99) ?? NaN).filter((v) => !isNaN(v))),
    };
  };
  const bullCallers = callerStats('bullmq');
  const callers = contenders
    .filter((n) => r.callers.some((c) => c.contender === n))
    .map((name) => {
      const st = callerStats(name);
      return {
        contender: name,
        putCallers: r.callers.find((c) => c.contender === name)?.putCallers ?? 0,
        jobs: r.callers.find((c) => c.contender === name)?.jobs ?? 0,
        ...st,
        putsRatioToBullmq: ratio(st.putsPerSec?.median, bullCallers.putsPerSec?.median),
        failures: r.callers.filter((c) => c.contender === name && !c.ok).map((c) => c.error ?? '?'),
      };
    });

  const targets: { target: string; measured: string; pass: boolean | null }[] = [];
  for (const t of throughput.filter((x) => x.contender === 'conveyor')) {
    const goal = t.mode === 'bulk' ? 0.95 : 0.9;
    targets.push({
      target: `end-to-end ${t.mode} c=${t.concurrency}: conveyor ≥ ${goal.toFixed(2)}× raw BullMQ jobs/s`,
      measured: t.ratioToBullmq === null ? 'n/a' : `${t.ratioToBullmq}×`,
      pass: t.ratioToBullmq === null ? null : t.ratioToBullmq >= goal,
    });
  }
  const conveyorCallers = callers.find((c) => c.contender === 'conveyor');
  if (conveyorCallers) {
    targets.push({
      target: `${conveyorCallers.putCallers} concurrent put callers: conveyor ≥ 1.5× raw BullMQ puts/s`,
      measured:
        conveyorCallers.putsRatioToBullmq === null
          ? 'n/a'
          : `${conveyorCallers.putsPerSec?.median} vs ${bullCallers.putsPerSec?.median} puts/s (${conveyorCallers.putsRatioToBullmq}×)`,
      pass: conveyorCallers.putsRatioToBullmq === null ? null : conveyorCallers.putsRatioToBullmq >= 1.5,
    });
    const mine = conveyorCallers.putP99Ms?.median;
    const theirs = bullCallers.putP99Ms?.median;
    targets.push({
      target: 'concurrent put latency p99: conveyor ≤ raw BullMQ p99 + linger (0 ms)',
      measured: mine === undefined || theirs === undefined ? 'n/a' : `${mine} ms vs ${theirs} ms`,
      pass: mine === undefined || theirs === undefined ? null : mine <= theirs,
    });
  }
  const conveyorLatency = latency.find((l) => l.contender === 'conveyor');
  if (conveyorLatency) {
    targets.push({
      target: 'add→start p99: conveyor ≤ 1.1× raw BullMQ',
      measured:
        conveyorLatency.ratioP99ToBullmq === null
          ? 'n/a'
          : `${conveyorLatency.p99} ms vs ${bullLatency.p99} ms (${conveyorLatency.ratioP99ToBullmq}×)`,
      pass: conveyorLatency.ratioP99ToBullmq === null ? null : conveyorLatency.ratioP99ToBullmq <= 1.1,
    });
  }
  const conveyorRss = rss.find((x) => x.contender === 'conveyor');
  const bullRss = rss.find((x) => x.contender === 'bullmq');
  if (conveyorRss?.loadMb != null && bullRss?.loadMb != null) {
    targets.push({
      target: 'consumer RSS under load: conveyor ≤ raw BullMQ + 10 MB',
      measured: `${conveyorRss.loadMb} MB vs ${bullRss.loadMb} MB`,
      pass: conveyorRss.loadMb <= bullRss.loadMb + 10,
    });
  }
  const conveyorMem = memory.find((m) => m.contender === 'conveyor' && m.ok);
  if (conveyorMem) {
    targets.push({
      target: 'Redis memory per 10k waiting: conveyor ≤ 1.05× raw BullMQ',
      measured: `${kb(conveyorMem.usedPer10kWaiting)} vs ${kb(bullMem?.usedPer10kWaiting)} (${conveyorMem.ratioToBullmq ?? 'n/a'}×)`,
      pass: conveyorMem.ratioToBullmq === null ? null : conveyorMem.ratioToBullmq <= 1.05,
    });
  }
  if (joins.lastDoneToJoinedMs) {
    targets.push({
      target: 'last completion → joined ≤ 100 ms (median; max shown)',
      measured: `median ${joins.lastDoneToJoinedMs.median} ms, max ${joins.lastDoneToJoinedMs.max} ms over ${joins.lastDoneToJoinedMs.n} runs`,
      pass: joins.lastDoneToJoinedMs.median <= 100,
    });
  }
  if (joins.joinedToExitedMs) {
    targets.push({
      target: 'joined → all consumers exited ≤ 1 s (median; max shown)',
      measured: `median ${joins.joinedToExitedMs.median} ms, max ${joins.joinedToExitedMs.max} ms`,
      pass: joins.joinedToExitedMs.median <= 1_000,
    });
  }
  if (opts.bigJobs !== null) {
    const big = scale.find((s) => s.contender === 'conveyor' && s.jobs === opts.bigJobs);
    const small =
      big &&
      scale.find(
        (s) => s.contender === 'conveyor' && s.jobs !== opts.bigJobs && s.consumers === big.consumers,
      );
    const rel = ratio(big?.jobsPerSec?.median, small?.jobsPerSec?.median);
    targets.push({
      target: `conveyor jobs/s at ${opts.bigJobs} jobs within 15% of ${small?.jobs ?? '?'}`,
      measured:
        rel === null ? 'n/a' : `${big?.jobsPerSec?.median} vs ${small?.jobsPerSec?.median} jobs/s (${rel}×)`,
      pass: rel === null ? null : rel >= 0.85,
    });
    // Flat: a run 10× larger leaves Redis and the consumer no more than 10% bigger.
    for (const [what, unit, of] of [
      ['Redis used_memory after completion', 'MB', (x: typeof big) => x?.redisAfterMb],
      ['consumer RSS peak', 'MB', (x: typeof big) => x?.rssPeakMb],
    ] as const) {
      const r = ratio(of(big), of(small));
      targets.push({
        target: `conveyor ${what} at ${opts.bigJobs} jobs ≤ 1.1× the ${small?.jobs ?? '?'}-job run`,
        measured: r === null ? 'n/a' : `${of(big)} vs ${of(small)} ${unit} (${r}×)`,
        pass: r === null ? null : r <= 1.1,
      });
    }
  }
  return { throughput, callers, latency, rss, memory, joins, scale, targets };
}

const roundMb = (v: number | undefined) => (v === undefined ? null : Math.round(v * 10) / 10);

function kb(bytes: number | undefined): string {
  return bytes === undefined ? 'n/a' : `${(bytes / 1024).toFixed(0)} KiB`;
}

const fmtSpread = (s: Spread | null) =>
  s ? `${Math.round(s.median)} (${Math.round(s.min)}–${Math.round(s.max)})` : 'failed';

function table(head: string[], rows: (string | number | null | undefined)[][]): string {
  const cells = [head, ...rows.map((r) => r.map((c) => (c === null || c === undefined ? '–' : String(c))))];
  const widths = head.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [
    line(cells[0]!),
    `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`,
    ...cells.slice(1).map(line),
  ].join('\n');
}

/** The summary as Markdown tables (printed on stdout and pasted into docs/performance.md). */
export function formatSummary(s: Summary): string {
  const parts: string[] = [];
  if (s.throughput.length) {
    parts.push(
      '### End-to-end jobs/s (1 consumer process; median (min–max) over repeats)\n',
      table(
        ['add', 'concurrency', 'contender', 'jobs', 'jobs/s', '× BullMQ'],
        s.throughput.map((t) => [
          t.mode === 'bulk' ? 'addBulk ×1000' : 'one at a time',
          t.concurrency,
          t.contender,
          t.jobs,
          fmtSpread(t.jobsPerSec),
          t.ratioToBullmq,
        ]),
      ),
    );
  }
  if (s.throughput.some((t) => t.cost)) {
    parts.push(
      '\n### Where the time goes: CPU µs per job (median over repeats) and Redis commands per job\n',
      'The producer figure includes its start-up; commands count each script call and each command it runs.\n',
      table(
        ['add', 'concurrency', 'contender', 'Redis µs', 'producer µs', 'consumer µs', 'total µs', 'commands'],
        s.throughput
          .filter((t) => t.cost)
          .map((t) => {
            const c = t.cost!;
            const total = [c.redisUs, c.producerUs, c.consumersUs].every((v) => v !== null)
              ? Math.round(c.redisUs! + c.producerUs! + c.consumersUs!)
              : null;
            return [
              t.mode === 'bulk' ? 'addBulk ×1000' : 'one at a time',
              t.concurrency,
              t.contender,
              c.redisUs,
              c.producerUs,
              c.consumersUs,
              total,
              c.commands,
            ];
          }),
      ),
    );
  }
  if (s.callers.length) {
    parts.push(
      `\n### ${s.callers[0]!.putCallers} concurrent put callers in one producer process (median (min–max) over repeats)\n`,
      table(
        ['contender', 'jobs', 'puts/s', '× BullMQ', 'end-to-end jobs/s', 'put p50 ms', 'put p99 ms'],
        s.callers.map((c) => [
          c.contender,
          c.jobs,
          fmtSpread(c.putsPerSec),
          c.putsRatioToBullmq,
          fmtSpread(c.jobsPerSec),
          c.putP50Ms?.median,
          c.putP99Ms?.median,
        ]),
      ),
    );
  }
  if (s.latency.length) {
    parts.push(
      '\n### add → start latency, idle consumer (ms)\n',
      table(
        ['contender', 'samples', 'p50', 'p95', 'p99', 'max', 'p99 × BullMQ'],
        s.latency.map((l) => [l.contender, l.samples, l.p50, l.p95, l.p99, l.max, l.ratioP99ToBullmq]),
      ),
    );
  }
  if (s.rss.some((x) => x.idleMb !== null)) {
    parts.push(
      '\n### Consumer RSS (MB)\n',
      table(
        ['contender', 'idle', 'under load (bulk, top concurrency)', 'peak in any run'],
        s.rss.map((x) => [x.contender, x.idleMb, x.loadMb, x.peakAnyRunMb]),
      ),
    );
  }
  if (s.memory.length) {
    parts.push(
      '\n### Redis memory\n',
      table(
        [
          'contender',
          'jobs',
          'used_memory / 10k waiting',
          'dataset / 10k waiting',
          'left after completion',
          '× BullMQ',
        ],
        s.memory.map((m) => [
          m.contender,
          m.jobs,
          kb(m.usedPer10kWaiting),
          kb(m.datasetPer10kWaiting),
          kb(m.usedAfterCompletion),
          m.ratioToBullmq,
        ]),
      ),
    );
  }
  if (s.joins.lastDoneToJoinedMs) {
    const j = s.joins;
    parts.push(
      `\n### conveyor join timings (${j.runs} runs)\n`,
      table(
        ['interval', 'min', 'median', 'max'],
        [
          [
            'last completion → joined (ms)',
            j.lastDoneToJoinedMs?.min,
            j.lastDoneToJoinedMs?.median,
            j.lastDoneToJoinedMs?.max,
          ],
          [
            'joined → all consumers exited (ms)',
            j.joinedToExitedMs?.min,
            j.joinedToExitedMs?.median,
            j.joinedToExitedMs?.max,
          ],
        ],
      ),
    );
  }
  if (s.scale.length) {
    parts.push(
      '\n### Scale (addBulk, concurrency per process shown)\n',
      table(
        [
          'jobs',
          'consumer processes',
          'concurrency',
          'contender',
          'jobs/s',
          '× BullMQ',
          'Redis MB after',
          'consumer RSS peak MB',
        ],
        s.scale.map((x) => [
          x.jobs,
          x.consumers,
          x.concurrency,
          x.contender,
          fmtSpread(x.jobsPerSec),
          x.ratioToBullmq,
          x.redisAfterMb,
          x.rssPeakMb,
        ]),
      ),
    );
  }
  if (s.targets.length) {
    parts.push(
      '\n### Targets\n',
      table(
        ['target', 'measured', 'result'],
        s.targets.map((t) => [t.target, t.measured, t.pass === null ? 'n/a' : t.pass ? 'met' : 'MISSED']),
      ),
    );
  }
  const failures = [
    ...s.throughput.flatMap((t) =>
      t.failures.map((f) => `${t.contender} ${t.mode} c=${t.concurrency}: ${f}`),
    ),
    ...s.scale.flatMap((x) => x.failures.map((f) => `${x.contender} scale ${x.jobs}×${x.consumers}: ${f}`)),
    ...s.callers.flatMap((x) => x.failures.map((f) => `${x.contender} ${x.putCallers} callers: ${f}`)),
    ...s.latency.filter((l) => l.error).map((l) => `${l.contender} latency: ${l.error}`),
    ...s.memory.filter((m) => !m.ok).map((m) => `${m.contender} memory: ${m.error}`),
  ];
  if (failures.length) parts.push('\n### Failed runs\n', ...failures.map((f) => `- ${f.split('\n')[0]}`));
  return parts.join('\n');
}

export function chartPanels(s: Summary, contenders: string[]): ChartPanel[] {
  const modes = [...new Set(s.throughput.map((t) => t.mode))];
  return modes.map((mode) => ({
    title: mode === 'bulk' ? 'addBulk (1000 per call)' : 'one add at a time',
    groups: [...new Set(s.throughput.filter((t) => t.mode === mode).map((t) => t.concurrency))].map((c) => ({
      label: `concurrency ${c}`,
      bars: contenders.map((name) => ({
        name,
        value:
          s.throughput.find((t) => t.mode === mode && t.concurrency === c && t.contender === name)?.jobsPerSec
            ?.median ?? null,
      })),
    })),
  }));
}
