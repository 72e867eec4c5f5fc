import { describe, expect, it } from 'vitest';
import { startConsumer } from '../../lib/consumer.js';
import { openProducer } from '../../lib/producer.js';
import { openRun } from '../../lib/run.js';
import { ConfigError } from '../../shared/config.js';

/** Typed library options go through the commands' parsers: same bounds, errors naming the option. */
describe('library options', () => {
  it('refuses a bad option before connecting, naming the option rather than its environment variable', async () => {
    const err = await openProducer({ runId: 'r', attempts: 0, putLingerMs: -1 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect([...(err as ConfigError).problems].sort()).toEqual([
      'attempts: must be at least 1 (got "0")',
      'putLingerMs: must be at least 0 (got "-1")',
    ]);
  });

  it('names both options when they disagree', () => {
    expect(() => openRun({ runId: 'r', heartbeatMs: 500, leaseMs: 1_000 })).toThrow(
      'heartbeatMs=500 with leaseMs=1000: the heartbeat must be at most a third of the lease (raise leaseMs to 1500 or lower heartbeatMs to 333)',
    );
  });

  it("checks the consumer's options too", async () => {
    await expect(startConsumer({ runId: 'r', flushMs: 0, tls: { caFile: '' } })).rejects.toThrow(
      /flushMs: must be at least 1 \(got "0"\)/,
    );
  });
});
