import { setTimeout as sleep } from 'node:timers/promises';
import type { ProducerClient } from '../../lib/producer.js';
import { RunError } from '../../shared/run/run-store.js';
import { seededRandom } from '../random.js';

export type WavesConfig = {
  /** The run's tag in the soak (r01...), carried in every payload. */
  tag: string;
  producerId: string;
  /** Puts to make in all. */
  puts: number;
  /** Puts made at once by one caller (`Promise.all`), drawn between these two. */
  wave: readonly [number, number];
  /** Callers putting side by side, so several put batches are in flight at once. */
  callers: number;
  /** A caller's pause between its waves (ms), drawn between these two. */
  pauseMs: readonly [number, number];
  /**
   * Each put of a wave starts after a delay up to this (ms), as a server's requests arrive: puts
   * then ride in several batches, two of them in flight at once, instead of one.
   */
  spreadMs: number;
  seed: number;
};

export type WavesOutcome = { resolved: number; rejected: number; stoppedBy: string | null };

/** One line of the producer side of the soak's ledger (what this client was told). */
export type LedgerWrite = (line: string) => void;

/**
 * A server's request handlers putting jobs: `callers` loops, each making a wave of concurrent
 * `put`s (started over `spreadMs`), recording every put that resolved with the job id it returned, then pausing. A put
 * refused by the run (fenced, joined...) ends every loop; any other rejection is recorded and
 * the loops go on. `signal` stops them between waves.
 */
export async function putInWaves(
  client: Pick<ProducerClient, 'put'>,
  config: WavesConfig,
  ledger: LedgerWrite,
  signal: AbortSignal,
): Promise<WavesOutcome> {
  const rng = seededRandom(config.seed);
  let budget = config.puts;
  let resolved = 0;
  let rejected = 0;
  let stoppedBy: string | null = null;
  const payload = () => {
    const r = rng.next();
    return {
      tag: config.tag,
      ms: rng.chance(0.03) ? rng.int(200, 600) : rng.int(2, 20),
      // A few jobs fail once and then complete; a few fail every attempt (ATTEMPTS=2) and end failed.
      ...(r < 0.04 ? { failAttempts: 1 } : r < 0.08 ? { failAttempts: 2 } : {}),
    };
  };
  const put = async () => {
    const delay = rng.int(0, config.spreadMs);
    if (delay > 0) await sleep(delay);
    try {
      const id = await client.put('soak-work', payload());
      resolved++;
      ledger(`put ${config.tag} ${id} ${process.pid}`);
    } catch (err) {
      rejected++;
      const why = err instanceof RunError ? err.code : err instanceof Error ? err.message : String(err);
      ledger(
        `reject ${config.tag} ${config.producerId} ${process.pid} ${why.replace(/\s+/g, '_').slice(0, 80)}`,
      );
      if (err instanceof RunError) stoppedBy ??= err.code;
    }
  };
  const caller = async () => {
    while (budget > 0 && stoppedBy === null && !signal.aborted) {
      const n = Math.min(budget, rng.int(...config.wave));
      budget -= n;
      await Promise.all(Array.from({ length: n }, put));
      await sleep(rng.int(...config.pauseMs), undefined, { signal }).catch(() => undefined);
    }
  };
  await Promise.all(Array.from({ length: config.callers }, caller));
  return { resolved, rejected, stoppedBy: stoppedBy ?? (signal.aborted ? 'signal' : null) };
}
