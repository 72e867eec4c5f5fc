import { describe, expect, inject, it } from 'vitest';
import { defaultMenu } from '../../soak/menu.js';
import { parseSoakOptions } from '../../soak/options.js';
import { formatReport } from '../../soak/report.js';
import { runSoak } from '../../soak/soak.js';

/**
 * The CI soak runs the whole single-Redis menu (every kind but the cluster's master-kill).
 * SOAK_TEST_FAULTS=a,b,c runs another menu, SOAK_TEST_SEED another seed.
 */
const MENU = defaultMenu(false);
const SEED = 20_260_101;

describe('soak', () => {
  it('a 90 s fault soak: every resolved put runs and is counted once, every run joins once in time and leaves no key', async () => {
    const binary = inject('redisServerBinary');
    if (!binary)
      throw new Error('the soak starts its own redis-server: install one (apt-get install redis-server)');
    // Parsed as `npm run soak` parses its flags, so the replay line the report prints is exact.
    const parsed = parseSoakOptions(
      ['--seed', process.env.SOAK_TEST_SEED ?? String(SEED), '--minutes', '1.5'],
      { SOAK_FAULTS: process.env.SOAK_TEST_FAULTS ?? MENU.join(',') },
      () => SEED,
    );
    if (parsed.kind !== 'soak') throw new Error('unreachable: no --list or --help given');
    const report = await runSoak(parsed.options, { binary, log: () => undefined });
    const table = `${formatReport(report)}${report.kept ? `\nlogs and ledgers: ${report.kept}` : ''}`;
    expect(report.failures, table).toEqual([]);
    expect(report.runs.length, table).toBeGreaterThanOrEqual(5);
    expect(
      report.faults.filter((f) => f.applied).length,
      `too few faults landed to call this a soak\n${table}`,
    ).toBeGreaterThanOrEqual(8);
  }, 240_000);
});
