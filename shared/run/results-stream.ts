import { setTimeout as sleep } from 'node:timers/promises';
import { parseJobId } from '../keys.js';
import type { RedisClient } from '../redis.js';
import { decodeStored, type RunResult } from './outcomes.js';
import { readRunResults } from './run-results.js';
import type { RunStore } from './run-store.js';

/** A result as `stream()` yields it: `cursor` resumes the stream just after it (`stream({ after })`). */
export type StreamedResult = RunResult & { cursor: string };

/**
 * Where a stream is: the last entry read from each shard's stream of finished jobs, and how many
 * of the entries given at the join (puts that ended without reaching a consumer) were yielded.
 */
type Position = { ids: string[]; atJoin: number };

function parseCursor(cursor: string | undefined, shards: number): Position {
  if (cursor === undefined) return { ids: Array.from({ length: shards }, () => '0-0'), atJoin: 0 };
  const [ids, atJoin] = cursor.split(';');
  const list = ids?.split(',') ?? [];
  if (list.length !== shards || !list.every((id) => /^\d+-\d+$/.test(id)) || !/^\d+$/.test(atJoin ?? ''))
    throw new TypeError(`after: "${cursor}" is not a cursor of this run (pass a result's cursor)`);
  return { ids: list, atJoin: Number(atJoin) };
}

const fieldOf = (fields: string[], name: string) => fields[fields.indexOf(name) + 1];

/**
 * asyncio's `as_completed` for a run created with collectResults: yields each put's result as its
 * job ends (the order the run's shards recorded them), then, once the run has joined, the puts that
 * ended without reaching a consumer (cancelled before they started, removed), in put order, and
 * ends. Each result carries a cursor; `after` resumes just past it, from any process, as long as the
 * run's state is kept (RUN_RETENTION_S). Polls every `pollMs`; stops with the signal's reason.
 */
export async function* streamRunResults(
  redis: RedisClient,
  store: RunStore,
  opts: { after?: string; pollMs?: number; signal?: AbortSignal } = {},
): AsyncGenerator<StreamedResult> {
  const prefix = await store.idPrefix();
  const at = parseCursor(opts.after, store.shardKeys.length);
  const cursor = () => `${at.ids.join(',')};${at.atJoin}`;
  const pollMs = opts.pollMs ?? 250;
  let joined = at.atJoin > 0;
  while (!joined) {
    opts.signal?.throwIfAborted();
    // Read before the streams: every job the join counted kept its end before it finished.
    const state = await redis.hget(store.keys.meta, 'state');
    if (state === null || state === 'abandoned')
      throw new Error(
        `run "${store.runId}" ${state === null ? 'is gone from Redis' : 'was abandoned'}: its results will not complete`,
      );
    joined = state === 'joined';
    let read = 0;
    for (const [shard, k] of store.shardKeys.entries()) {
      const reply = await redis.xread('COUNT', 500, 'STREAMS', k.finished, at.ids[shard]!);
      const entries = reply?.[0]?.[1] ?? [];
      if (entries.length === 0) continue;
      read += entries.length;
      const jobIds = entries.map(([, fields]) => fieldOf(fields, 'job') ?? '');
      const kept = await redis.hmget(k.results, ...jobIds);
      for (const [i, [entryId]] of entries.entries()) {
        at.ids[shard] = entryId;
        const jobId = jobIds[i]!;
        const origin = parseJobId(prefix, jobId);
        const raw = kept[i];
        // An entry of an earlier run with this id, or one whose run state has expired meanwhile.
        if (!origin || origin.kind === 'callback' || raw == null) continue;
        const producer = origin.kind === 'keyed' ? 'keyed' : origin.instance;
        yield { jobId, producer, ...decodeStored(raw), cursor: cursor() };
      }
    }
    // A full page may have more behind it: read again at once.
    if (read > 0) joined = false;
    else if (!joined) await sleep(pollMs, undefined, { signal: opts.signal });
  }
  const streamed = await streamedJobs(redis, store);
  const rest = (await readRunResults(redis, store)).filter((r) => !streamed.has(r.jobId));
  for (let i = at.atJoin; i < rest.length; i++) {
    at.atJoin = i + 1;
    yield { ...rest[i]!, cursor: cursor() };
  }
}

/** Every job id in the run's streams of finished jobs. */
async function streamedJobs(redis: RedisClient, store: RunStore): Promise<Set<string>> {
  const ids = new Set<string>();
  for (const k of store.shardKeys) {
    let from = '-';
    for (;;) {
      const page = await redis.xrange(k.finished, from, '+', 'COUNT', 5_000);
      for (const [, fields] of page) ids.add(fieldOf(fields, 'job') ?? '');
      if (page.length < 5_000) break;
      from = `(${page.at(-1)![0]}`;
    }
  }
  return ids;
}
