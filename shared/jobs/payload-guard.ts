/** Limits applied to every payload before its schema runs, whatever the job type. */
export type PayloadLimits = { maxBytes: number; maxDepth: number };

export const defaultPayloadLimits: PayloadLimits = { maxBytes: 64 * 1024, maxDepth: 32 };

/**
 * Returns why a value cannot be a job payload, or null if it can: payloads travel as JSON, so only
 * plain JSON values pass (no functions, symbols, BigInt, NaN, class instances), with bounded depth and
 * size, and no keys that could pollute a prototype when a consumer merges them.
 */
export function payloadProblem(
  value: unknown,
  limits: PayloadLimits = defaultPayloadLimits,
  measureSize = true,
): string | null {
  const problem = walk(value, '$', 0, limits.maxDepth);
  if (problem || !measureSize) return problem;
  const bytes = Buffer.byteLength(JSON.stringify(value) ?? '');
  if (bytes > limits.maxBytes) return `payload is ${bytes} bytes as JSON; the limit is ${limits.maxBytes}`;
  return null;
}

const FORBIDDEN_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function walk(value: unknown, path: string, depth: number, maxDepth: number): string | null {
  if (depth > maxDepth) return `${path} is nested deeper than ${maxDepth} levels`;
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return null;
  if (typeof value === 'number') return Number.isFinite(value) ? null : `${path} is not a finite number`;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const p = walk(value[i], `${path}[${i}]`, depth + 1, maxDepth);
      if (p) return p;
    }
    return null;
  }
  if (typeof value === 'object') {
    const proto = Object.getPrototypeOf(value) as unknown;
    if (proto !== Object.prototype && proto !== null) return `${path} is not a plain JSON object`;
    for (const key of Object.keys(value)) {
      if (FORBIDDEN_KEYS.has(key)) return `${path} has the forbidden key "${key}"`;
      const p = walk((value as Record<string, unknown>)[key], `${path}.${key}`, depth + 1, maxDepth);
      if (p) return p;
    }
    return null;
  }
  return `${path} is a ${typeof value}, which JSON cannot carry`;
}
