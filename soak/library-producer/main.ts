import { appendFileSync } from 'node:fs';
import type { ConnectionOptions } from '../../lib/options.js';
import { openProducer, type ProducerOptions } from '../../lib/producer.js';
import { loadProducerConfig } from '../../producers/config.js';
import { ConfigError, int, name, parseEnv, text } from '../../shared/config.js';
import { createLogger } from '../../shared/logger.js';
import { RunError } from '../../shared/run/run-store.js';
import { soakJobs } from '../soak-jobs.js';
import { putInWaves } from './put-waves.js';

/**
 * One library producer of the soak, as its own process: `openProducer` from lib/, then waves of
 * concurrent puts (put-waves.ts), then `done()`. What it was told goes to SOAK_PUT_LEDGER:
 *
 *   put <tag> <jobId> <pid>                        a put that resolved, with the id it returned
 *   reject <tag> <producer> <pid> <why>            a put that rejected
 *   done <tag> <producer> <pid> <state> <joinedNow>, or refused <tag> <producer> <pid> <why>
 *
 * Every protocol setting (REDIS_URL, QUEUE, SHARDS, LEASE_MS, HEARTBEAT_MS, KEEP_COMPLETED,
 * RUN_RETENTION_S...) is read from the environment by the producer command's own parser, then handed
 * to openProducer as its options.
 */
const shape = {
  RUN_ID: name('default'),
  PRODUCER_ID: name('p1'),
  PRODUCERS: int(1, 1, 100),
  SOAK_TAG: name('r00'),
  SOAK_PUT_LEDGER: text(''),
  SOAK_PUTS: int(100, 0, 1_000_000),
  SOAK_WAVE_MIN: int(50, 1, 10_000),
  SOAK_WAVE_MAX: int(200, 1, 10_000),
  SOAK_CALLERS: int(3, 1, 64),
  SOAK_PAUSE_MIN_MS: int(200, 0, 60_000),
  SOAK_PAUSE_MAX_MS: int(800, 0, 60_000),
  SOAK_SPREAD_MS: int(200, 0, 60_000),
  SOAK_SEED: int(1, 0, 2 ** 32),
  SOAK_ON_JOIN: int(0, 0, 1),
};

const log = createLogger({
  level: process.env.LOG_LEVEL === 'debug' ? 'debug' : 'warn',
  service: 'soak-producer',
});
let e, protocol;
try {
  e = parseEnv(shape, process.env);
  protocol = protocolOptions(process.env);
  if (!e.SOAK_PUT_LEDGER)
    throw new ConfigError(['SOAK_PUT_LEDGER: required (the file puts are recorded in)']);
} catch (err) {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
}
const ledgerFile = e.SOAK_PUT_LEDGER;
const ledger = (line: string) => appendFileSync(ledgerFile, `${line}\n`);
const who = `${e.SOAK_TAG} ${e.PRODUCER_ID} ${process.pid}`;
const stop = new AbortController();
process.once('SIGTERM', () => stop.abort());
process.once('SIGINT', () => stop.abort());

try {
  const producer = await openProducer({
    runId: e.RUN_ID,
    producerId: e.PRODUCER_ID,
    producers: e.PRODUCERS,
    jobs: soakJobs,
    attempts: 2,
    backoffMs: 50,
    ...(e.SOAK_ON_JOIN ? { onJoin: { type: 'soak-joined', payload: { tag: e.SOAK_TAG } } } : {}),
    ...protocol,
    log,
  });
  const outcome = await putInWaves(
    producer,
    {
      tag: e.SOAK_TAG,
      producerId: e.PRODUCER_ID,
      puts: e.SOAK_PUTS,
      wave: [e.SOAK_WAVE_MIN, e.SOAK_WAVE_MAX],
      callers: e.SOAK_CALLERS,
      pauseMs: [e.SOAK_PAUSE_MIN_MS, e.SOAK_PAUSE_MAX_MS],
      spreadMs: e.SOAK_SPREAD_MS,
      seed: e.SOAK_SEED,
    },
    ledger,
    stop.signal,
  );
  if (outcome.stoppedBy === 'fenced') {
    // A fenced instance can report nothing: a later incarnation or the run's join check settled it.
    await producer.close();
    ledger(`done ${who} fenced false`);
    process.exitCode = 1;
  } else {
    const { state, join } = await producer.done();
    ledger(`done ${who} ${state} ${join.joinedNow}`);
    process.exitCode = state === 'done' ? 0 : 1;
  }
} catch (err) {
  const why = err instanceof RunError ? err.code : err instanceof Error ? err.message : String(err);
  ledger(`refused ${who} ${why.replace(/\s+/g, '_').slice(0, 80)}`);
  log.warn({ err: why }, 'library producer ended with an error');
  process.exitCode = 1;
}

/** The protocol settings the producer command would read from `env`, as openProducer's options. */
function protocolOptions(env: NodeJS.ProcessEnv): ConnectionOptions & Partial<ProducerOptions> {
  const c = loadProducerConfig(env);
  return {
    redisUrl: c.redisUrl,
    queue: c.queue,
    shards: c.shards,
    tls: { caFile: c.redisTlsCaFile },
    heartbeatMs: c.heartbeatMs,
    leaseMs: c.leaseMs,
    keepCompleted: c.retry.keepCompleted,
    keepFailed: c.retry.keepFailed,
    retentionS: c.retentionMs / 1000,
  };
}
