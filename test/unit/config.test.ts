import { describe, expect, it } from 'vitest';
import { loadConsumerConfig } from '../../consumers/config.js';
import { loadProducerConfig } from '../../producers/config.js';
import { ConfigError, drawCount, int, parseEnv } from '../../shared/config.js';

function problemsOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return [...err.problems];
    throw err;
  }
  throw new Error('expected a ConfigError');
}

describe('producer config', () => {
  it('uses the seed defaults when nothing is set', () => {
    const c = loadProducerConfig({});
    expect(c.redisUrl).toBe('redis://127.0.0.1:6379');
    expect(c.queue).toBe('conveyor');
    expect(c.runId).toBe('default');
    expect(c.jobs).toEqual({ min: 0, max: 5 });
    expect(c.intervalMs).toBe(2000);
    expect(c.jobType).toBe('sleep');
    expect(c.jobMs).toBe(1000);
  });

  it('reads a fixed count and a range', () => {
    expect(loadProducerConfig({ JOBS: '20' }).jobs).toEqual({ min: 20, max: 20 });
    expect(loadProducerConfig({ JOBS: '3-7' }).jobs).toEqual({ min: 3, max: 7 });
  });

  it('names every bad variable and the value given', () => {
    const problems = problemsOf(() =>
      loadProducerConfig({ JOBS: 'lots', PRODUCE_INTERVAL_MS: '-1', REDIS_URL: 'http://x', QUEUE: 'a:b' }),
    );
    expect(problems).toHaveLength(4);
    expect(problems.find((p) => p.startsWith('JOBS:'))).toContain('"lots"');
    expect(problems.find((p) => p.startsWith('PRODUCE_INTERVAL_MS:'))).toContain('at least 0');
    expect(problems.find((p) => p.startsWith('REDIS_URL:'))).toContain('redis://');
    expect(problems.find((p) => p.startsWith('QUEUE:'))).toBeDefined();
  });

  it('refuses PRODUCER_ID "k": its job ids would be the ids of idempotency keys', () => {
    expect(problemsOf(() => loadProducerConfig({ PRODUCER_ID: 'k' }))).toEqual([
      expect.stringMatching(/^PRODUCER_ID: .*idempotency/),
    ]);
    expect(loadProducerConfig({ PRODUCER_ID: 'k2' }).producerId).toBe('k2');
  });

  it('refuses a backwards range rather than guessing', () => {
    expect(problemsOf(() => loadProducerConfig({ JOBS: '5-2' }))[0]).toMatch(
      /^JOBS: range must go from low to high/,
    );
  });

  it('requires FETCH_URLS for fetch jobs and checks each URL', () => {
    expect(problemsOf(() => loadProducerConfig({ JOB_TYPE: 'fetch' }))[0]).toMatch(/^FETCH_URLS: required/);
    expect(problemsOf(() => loadProducerConfig({ JOB_TYPE: 'fetch', FETCH_URLS: 'ftp://x' }))[0]).toMatch(
      /^FETCH_URLS: "ftp:\/\/x"/,
    );
    expect(loadProducerConfig({ JOB_TYPE: 'fetch', FETCH_URLS: 'http://a/, https://b/' }).fetchUrls).toEqual([
      'http://a/',
      'https://b/',
    ]);
  });

  it('never echoes the value of a secret variable in an error', () => {
    const problems = problemsOf(() =>
      parseEnv(
        { DASHBOARD_PASSWORD: int(0, 1), API_TOKEN: int(0, 1) },
        { DASHBOARD_PASSWORD: 'hunter2', API_TOKEN: 's3cret' },
      ),
    );
    expect(problems).toEqual([
      'DASHBOARD_PASSWORD: must be a whole number (got <hidden>)',
      'API_TOKEN: must be a whole number (got <hidden>)',
    ]);
  });

  it('masks the password of a malformed Redis URL', () => {
    const [problem] = problemsOf(() => loadProducerConfig({ REDIS_URL: 'http://user:hunter2@host:6379' }));
    expect(problem).toContain('(got "http://user:***@host:6379")');
    expect(problem).not.toContain('hunter2');
  });
});

describe('consumer config', () => {
  it('is a plain long-lived worker without RUN_ID', () => {
    const c = loadConsumerConfig({});
    expect(c.runId).toBeUndefined();
    expect(c.concurrency).toBe(1);
  });

  it('rejects a zero or non-numeric concurrency by name', () => {
    expect(problemsOf(() => loadConsumerConfig({ CONCURRENCY: '0' }))[0]).toMatch(
      /^CONCURRENCY: must be at least 1/,
    );
    expect(problemsOf(() => loadConsumerConfig({ CONCURRENCY: 'ten' }))[0]).toMatch(
      /^CONCURRENCY: must be a whole number/,
    );
  });

  it('RUN_ABANDON_S: unset leaves each run its own retention, 0 is never, garbage is refused by name', () => {
    expect(loadConsumerConfig({}).runAbandonMs).toBeUndefined();
    expect(loadConsumerConfig({ RUN_ABANDON_S: '' }).runAbandonMs).toBeUndefined();
    expect(loadConsumerConfig({ RUN_ABANDON_S: '0' }).runAbandonMs).toBe(0);
    expect(loadConsumerConfig({ RUN_ABANDON_S: '3600' }).runAbandonMs).toBe(3_600_000);
    expect(problemsOf(() => loadConsumerConfig({ RUN_ABANDON_S: '1h' }))).toEqual([
      'RUN_ABANDON_S: must be a whole number (got "1h")',
    ]);
    expect(problemsOf(() => loadConsumerConfig({ RUN_ABANDON_S: '-1' }))[0]).toMatch(
      /^RUN_ABANDON_S: must be at least 0/,
    );
  });
});

describe('drawCount', () => {
  it('covers both ends of the range', () => {
    expect(drawCount({ min: 0, max: 5 }, () => 0)).toBe(0);
    expect(drawCount({ min: 0, max: 5 }, () => 0.9999)).toBe(5);
    expect(drawCount({ min: 4, max: 4 }, () => 0.5)).toBe(4);
  });
});
