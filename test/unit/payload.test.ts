import { describe, expect, it } from 'vitest';
import { builtinJobs, JobRegistry } from '../../shared/jobs/index.js';
import { payloadProblem } from '../../shared/jobs/payload-guard.js';

describe('payloadProblem', () => {
  it('accepts plain JSON', () => {
    expect(payloadProblem({ a: [1, 'x', null, true, { b: 2.5 }] })).toBeNull();
  });

  it.each([
    [
      'a prototype key',
      JSON.parse('{"__proto__": {"polluted": true}}') as unknown,
      /forbidden key "__proto__"/,
    ],
    ['a constructor key', { constructor: 1 }, /forbidden key "constructor"/],
    ['NaN', { n: NaN }, /\$\.n is not a finite number/],
    ['a function', { f: () => 1 }, /\$\.f is a function/],
    ['a BigInt', { b: 10n }, /\$\.b is a bigint/],
    ['a Date', { d: new Date() }, /not a plain JSON object/],
    ['undefined', { u: undefined }, /\$\.u is a undefined/],
  ])('rejects %s', (_label, value, reason) => {
    expect(payloadProblem(value)).toMatch(reason);
  });

  it('rejects deep nesting and oversized payloads', () => {
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    expect(payloadProblem(deep)).toMatch(/nested deeper than 32/);
    expect(payloadProblem({ s: 'x'.repeat(70_000) })).toMatch(/bytes as JSON; the limit is 65536/);
  });
});

describe('JobRegistry.validate', () => {
  const registry = new JobRegistry(builtinJobs);

  it('accepts a valid sleep payload', () => {
    expect(registry.validate('sleep', { value: 3, ms: 10 })).toEqual({
      ok: true,
      payload: { value: 3, ms: 10 },
    });
  });

  it('names the field that is wrong', () => {
    const v = registry.validate('sleep', { value: 'three', ms: 10 });
    expect(v.ok).toBe(false);
    if (!v.ok) expect(v.reason).toMatch(/^value:/);
  });

  it('rejects unknown fields and unknown types', () => {
    const extra = registry.validate('sleep', { value: 1, ms: 1, extra: true });
    expect(extra.ok).toBe(false);
    const unknown = registry.validate('nope', {});
    expect(unknown).toEqual({
      ok: false,
      reason: 'unknown job type "nope" (known: sleep, fetch, run-report)',
    });
  });

  it('only lets fetch jobs reach http(s) URLs', () => {
    expect(registry.validate('fetch', { url: 'https://example.org/' }).ok).toBe(true);
    expect(registry.validate('fetch', { url: 'file:///etc/passwd' }).ok).toBe(false);
  });

  it('refuses registering the same type twice', () => {
    expect(() => new JobRegistry([...builtinJobs, builtinJobs[0]!])).toThrow(/registered twice/);
  });
});
