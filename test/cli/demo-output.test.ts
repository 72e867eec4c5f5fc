import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../shared/roles.js';
import { FAST } from '../helpers/demo.js';
import { exitOf, spawnTracked } from '../helpers/processes.js';

/** The demo's output when nobody watches a terminal (CI, a pipe): readable, no control codes, no surprises. */
describe('demo output', () => {
  it('children log in words, no terminal codes, and it says what stops when it ends', async () => {
    const demo = spawnTracked(
      'demo',
      process.execPath,
      ['--import', 'tsx', `${projectRoot}/scripts/demo/main.ts`],
      {
        ...FAST,
        PRODUCERS: '1',
        CONSUMERS: '1',
        JOBS: '2',
        JOB_MS: '10',
        PRODUCE_INTERVAL_MS: '0',
        DASHBOARD_PORT: '0',
      },
    );
    expect((await exitOf(demo, 60_000)).code, demo.output()).toBe(0);
    const out = demo.output();
    expect(out).not.toContain('\x1b[');
    // The dashboard's warning, as words rather than a JSON line.
    expect(out).toMatch(/^\[dashboard\] WARN no DASHBOARD_USER\/DASHBOARD_PASSWORD or DASHBOARD_TOKEN set/m);
    expect(out).not.toMatch(/^\[\w+(-\d+)?\] \{"level"/m);
    expect(demo.stdout()).toContain(
      'it stops when the demo ends (DEMO_KEEP_DASHBOARD=true keeps it up after the join)',
    );
    expect(demo.stdout()).toContain('The dashboard has stopped.');
    expect(demo.stdout()).toContain("The demo's private Redis stops now, and the run with it");
  }, 70_000);
});
