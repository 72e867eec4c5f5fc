import { existsSync, readFileSync } from 'node:fs';
import { putJobId, queueShards, shardJobPrefix, shardRunKeys } from '../shared/keys.js';
import type { RedisClient } from '../shared/redis.js';
import { readRunStatus, type RunStatus } from '../shared/run/status.js';
import type { ChaosProcess } from './processes.js';

export type LedgerEntry = { starts: number; finishes: number };

/** Reads the consumers' ledger: `start <id> <pid> <attempt>` / `finish <id> <pid>` lines. */
export function readLedger(file: string): Map<string, LedgerEntry> {
  const ledger = new Map<string, LedgerEntry>();
  if (!existsSync(file)) return ledger;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [kind, id] = line.split(' ');
    if (!id || (kind !== 'start' && kind !== 'finish')) continue;
    let e = ledger.get(id);
    if (!e) ledger.set(id, (e = { starts: 0, finishes: 0 }));
    if (kind === 'start') e.starts++;
    else e.finishes++;
  }
  return ledger;
}

/**
 * The producers' side of the ledger, from their own logs: a producer logs `put` with `sent` only after
 * `putMany` returned, i.e. after Redis acknowledged the put (stored and counted in one script). Ids are
 * deterministic (`<run>.<producer>.<seq>`), so `sent = n` means ids 0..n-1 were acknowledged.
 * Independent of Redis: if Redis forgets an acknowledged job, this still remembers it.
 */
export function producerAcknowledged(idPrefix: string, producers: readonly ChaosProcess[]): Set<string> {
  const ids = new Set<string>();
  for (const p of producers) {
    let producerId: string | undefined;
    let sent = 0;
    for (const line of p.output().split('\n')) {
      if (!line.includes('"msg":"put"')) continue;
      try {
        const rec = JSON.parse(line) as { sent?: number; producerId?: string };
        if (typeof rec.sent === 'number' && rec.sent > sent) sent = rec.sent;
        producerId ??= rec.producerId;
      } catch {
        // a line cut by a SIGKILL
      }
    }
    for (let i = 0; producerId && i < sent; i++) ids.add(putJobId(idPrefix, producerId, i));
  }
  return ids;
}

/** The run's job id prefix as a producer logged it when it registered. */
function loggedIdPrefix(producers: readonly ChaosProcess[]): string | undefined {
  for (const p of producers) {
    const found = /"idPrefix":"([^"]+)"/.exec(p.output());
    if (found) return found[1];
  }
  return undefined;
}

export type AuditFigures = {
  /** Ids acknowledged by a producer (its log) or by the run (its producer records). */
  acknowledged: number;
  /**
   * Acknowledged, but never finished by a handler, never completed or failed in BullMQ, and not
   * removed by a cancel before it started.
   */
  lost: string[];
  /** Finished in BullMQ or by a handler, but acknowledged by nobody. */
  unexpected: string[];
  /** Jobs the run counted more than once (finished or produced). */
  duplicated: number;
  /** Handler starts beyond the first, summed over jobs (redeliveries). */
  duplicateStarts: number;
  /** Jobs whose handler ran to the end more than once. */
  reexecuted: number;
  completed: number;
  failed: string[];
  /** Processes that logged flipping the run to joined (must be exactly 1). */
  joins: number;
  status: RunStatus | null;
  /** Acknowledged by a producer but unknown to the run's own counters (Redis forgot them). */
  forgottenByRun: number;
};

export async function audit(opts: {
  redis: RedisClient;
  queue: string;
  /** How many shards the queue is spread over. */
  shards: number;
  runId: string;
  ledgerFile: string;
  producers: readonly ChaosProcess[];
  all: readonly ChaosProcess[];
  leaseMs: number;
  /** Ids acknowledged outside the producer processes (idempotency keys, in-process producers). */
  extraAcknowledged?: Iterable<string>;
  /** Ids the scenario injected on purpose without a producer (malformed jobs written into Redis). */
  injected?: ReadonlySet<string>;
  /** Producers used idempotency keys, so their records' counts do not map to `<run>.<producer>.<seq>` ids. */
  keyed?: boolean;
  /** The run's join callbacks (`<run>+<n>@on-join`...): jobs of the run's own making, outside its totals. */
  callbacks?: ReadonlySet<string>;
  /** Joins the harness itself made (in-process producers reporting done), which log no line. */
  harnessJoins?: number;
}): Promise<AuditFigures> {
  const { redis, queue, runId } = opts;
  const status = await readRunStatus(redis, queue, runId, opts.leaseMs);
  // The run's state may be gone (Redis restarted without persistence): its producers logged the prefix.
  const prefix = status?.idPrefix ?? loggedIdPrefix(opts.producers) ?? `${runId}+?`;
  const fromProducers = producerAcknowledged(prefix, opts.producers);
  const acked = new Set([...fromProducers, ...(opts.extraAcknowledged ?? [])]);
  for (const p of opts.keyed ? [] : (status?.producers.list ?? [])) {
    for (let i = 0; i < p.produced; i++) acked.add(putJobId(prefix, p.id, i));
  }
  const sets = await Promise.all(
    queueShards(queue, opts.shards).map(async (shard) => {
      const prefix = shardJobPrefix(shard);
      const [done, fail, cancelled] = await Promise.all([
        redis.zrange(`${prefix}completed`, '0', '-1'),
        redis.zrange(`${prefix}failed`, '0', '-1'),
        redis.smembers(shardRunKeys(shard, runId).cancelled),
      ]);
      // A job a cancel removed before it started is in no BullMQ set: the run's cancelled set names it.
      const removedByCancel: string[] = [];
      for (const id of cancelled) if ((await redis.exists(`${prefix}${id}`)) === 0) removedByCancel.push(id);
      return { done, fail, removedByCancel };
    }),
  );
  const completed = sets.flatMap((x) => x.done);
  const failed = sets.flatMap((x) => x.fail);
  const ledger = readLedger(opts.ledgerFile);
  const cancelledUnstarted = sets.flatMap((x) => x.removedByCancel);
  const finished = new Set([...completed, ...failed, ...cancelledUnstarted]);
  for (const [id, e] of ledger) if (e.finishes > 0) finished.add(id);
  const injected = opts.injected ?? new Set<string>();

  const lost = [...acked].filter((id) => !finished.has(id));
  const unexpected = [...finished].filter(
    (id) => !acked.has(id) && !injected.has(id) && !opts.callbacks?.has(id) && id.startsWith(prefix),
  );
  let duplicateStarts = 0;
  let reexecuted = 0;
  for (const e of ledger.values()) {
    duplicateStarts += Math.max(0, e.starts - 1);
    if (e.finishes > 1) reexecuted++;
  }
  let duplicated = 0;
  let forgottenByRun = 0;
  if (status) {
    const j = status.jobs;
    const ackedFinished = [...acked].filter((id) => finished.has(id)).length;
    const injectedCounted = [...injected].filter((id) => finished.has(id)).length;
    duplicated += Math.max(
      0,
      j.completed + j.failed + j.cancelled + j.removed - ackedFinished - injectedCounted,
    );
    duplicated += Math.max(0, j.produced - acked.size);
    forgottenByRun = Math.max(0, acked.size - j.produced);
  }
  const joins =
    (opts.harnessJoins ?? 0) +
    opts.all.reduce(
      (n, p) =>
        n +
        p
          .output()
          .split('\n')
          .filter((l) => l.includes('"msg":"run joined"')).length,
      0,
    );
  return {
    acknowledged: acked.size,
    lost,
    unexpected,
    duplicated,
    duplicateStarts,
    reexecuted,
    completed: completed.length,
    failed,
    joins,
    status,
    forgottenByRun,
  };
}
