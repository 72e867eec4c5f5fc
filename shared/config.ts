import { z } from 'zod';
import { parseRedisTarget, redactUrl } from './redis-url.js';

/** Environment as handed to a `main.ts`; everything below takes it as a parameter, never `process.env`. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Thrown when configuration is invalid; `main.ts` files turn it into exit code 2. */
export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

/** Names that end up inside Redis keys and BullMQ job ids: no ':' (BullMQ forbids it in ids), no spaces. */
const NAME_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
export const nameSchema = z
  .string()
  .regex(NAME_PATTERN, 'must be 1-64 characters of letters, digits, "_", "." or "-"');

const intText = (min: number, max = Number.MAX_SAFE_INTEGER) =>
  z
    .string()
    .trim()
    .regex(/^-?\d+$/, 'must be a whole number')
    .transform(Number)
    .pipe(z.number().int().min(min, `must be at least ${min}`).max(max, `must be at most ${max}`));

/** A whole number from an env var, with a default used only when the variable is unset or empty. */
export const int = (fallback: number, min: number, max?: number) =>
  z.preprocess(emptyToUndefined, intText(min, max).optional()).transform((v) => v ?? fallback);

/** A whole number from an env var, or undefined when the variable is unset or empty. */
export const optionalInt = (min: number, max?: number) =>
  z.preprocess(emptyToUndefined, intText(min, max).optional());

/** `true`/`false` (also 1/0, yes/no); anything else is an error, never a silent false. */
export const bool = (fallback: boolean) =>
  z.preprocess(
    emptyToUndefined,
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no'], { error: 'must be true or false' })
      .optional()
      .transform((v) => (v === undefined ? fallback : v === 'true' || v === '1' || v === 'yes')),
  );

export const text = (fallback: string) =>
  z.preprocess(emptyToUndefined, z.string().optional()).transform((v) => v ?? fallback);

export const name = (fallback: string) =>
  z.preprocess(emptyToUndefined, nameSchema.optional()).transform((v) => v ?? fallback);

export const optionalName = () => z.preprocess(emptyToUndefined, nameSchema.optional());

/** A count or a range `a-b` (inclusive), drawn from at random like `randint(0, 5)`. */
export type CountSpec = { min: number; max: number };
export const countSpec = (fallback: CountSpec) =>
  z.preprocess(
    emptyToUndefined,
    z
      .string()
      .trim()
      .regex(/^\d+(-\d+)?$/, 'must be a count like 20 or a range like 0-5')
      .transform((v): CountSpec => {
        const [a, b] = v.split('-').map(Number) as [number, number | undefined];
        return { min: a, max: b ?? a };
      })
      .refine((c) => c.min <= c.max, 'range must go from low to high')
      .optional()
      .transform((v) => v ?? fallback),
  );

export const redisUrl = () =>
  z.preprocess(
    emptyToUndefined,
    z
      .string()
      .refine(
        (v) => parseRedisTarget(v) !== null,
        'must be a URL like redis://host:6379, rediss://host:6380 or redis+cluster://host:7000,host:7001',
      )
      .optional()
      .transform((v) => v ?? 'redis://127.0.0.1:6379'),
  );

function emptyToUndefined(v: unknown): unknown {
  return typeof v === 'string' && v.trim() === '' ? undefined : v;
}

/**
 * Parses `env` against a schema keyed by variable names. Collects every problem, each naming the
 * variable and the value given, so one start-up shows everything wrong at once.
 */
export function parseEnv<S extends z.ZodRawShape>(shape: S, env: Env): z.infer<z.ZodObject<S>> {
  const result = z.object(shape).safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const key = String(issue.path[0] ?? '?');
    const given = env[key];
    const secret = /PASSWORD|TOKEN|SECRET/.test(key);
    // Anything that may be a URL may carry a password, even when malformed: shown only as redactUrl reads it.
    const urlLike = given !== undefined && (given.includes('://') || given.includes('@'));
    const shown = secret ? '<hidden>' : JSON.stringify(urlLike ? redactUrl(given) : given);
    return `${key}: ${issue.message} (got ${shown})`;
  });
  throw new ConfigError(problems);
}

/** Settings every conveyor process shares. */
export const commonShape = {
  REDIS_URL: redisUrl(),
  REDIS_TLS_CA: z.preprocess(emptyToUndefined, z.string().optional()),
  QUEUE: name('conveyor'),
  LOG_LEVEL: z.preprocess(
    emptyToUndefined,
    z
      .enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], {
        error: 'must be one of trace, debug, info, warn, error, fatal, silent',
      })
      .optional()
      .transform((v) => v ?? 'info'),
  ),
  SHUTDOWN_GRACE_MS: int(10_000, 0, 600_000),
  HEARTBEAT_MS: int(1_000, 50, 60_000),
  LEASE_MS: int(10_000, 200, 3_600_000),
  // One logical queue spread over this many BullMQ queues (one per Redis Cluster master, ideally).
  SHARDS: int(1, 1, 64),
};

export type CommonConfig = {
  redisUrl: string;
  redisTlsCaFile: string | undefined;
  queue: string;
  logLevel: string;
  shutdownGraceMs: number;
  heartbeatMs: number;
  leaseMs: number;
  shards: number;
};

export function toCommonConfig(e: z.infer<z.ZodObject<typeof commonShape>>): CommonConfig {
  // A lease must outlast a few missed heartbeats, and half a lease of silence reads as a Redis outage.
  if (e.HEARTBEAT_MS * 3 > e.LEASE_MS)
    throw new ConfigError([
      `HEARTBEAT_MS=${e.HEARTBEAT_MS} with LEASE_MS=${e.LEASE_MS}: the heartbeat must be at most a third of the lease (raise LEASE_MS to ${e.HEARTBEAT_MS * 3} or lower HEARTBEAT_MS to ${Math.floor(e.LEASE_MS / 3)})`,
    ]);
  return {
    redisUrl: e.REDIS_URL,
    redisTlsCaFile: e.REDIS_TLS_CA,
    queue: e.QUEUE,
    logLevel: e.LOG_LEVEL,
    shutdownGraceMs: e.SHUTDOWN_GRACE_MS,
    heartbeatMs: e.HEARTBEAT_MS,
    leaseMs: e.LEASE_MS,
    shards: e.SHARDS,
  };
}

/** Draws a count from a spec with the given random source (injectable so tests are deterministic). */
export function drawCount(spec: CountSpec, random: () => number = Math.random): number {
  return spec.min + Math.floor(random() * (spec.max - spec.min + 1));
}

/** A comma-separated list, blanks dropped. */
export function splitList(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** The default id of a producer or consumer process: `<host>-<pid>`, reduced to the id alphabet. */
export function defaultProcessId(host: string, pid: number): string {
  return `${host.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 40)}-${pid}`;
}
