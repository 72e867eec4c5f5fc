import { describe, expect, it } from 'vitest';
import { endSummary } from '../../scripts/demo/end-summary.js';

describe("the demo's last lines", () => {
  const children = [{ label: 'consumer-1' }, { label: 'producer-1' }];

  it('after a Ctrl-C at start-up: the run stopped before it started, and a process ended while loading is said so, not "code null"', () => {
    const text = endSummary('r', null, 0, true, children, [
      { code: null, signal: 'SIGTERM' },
      { code: 0, signal: null },
    ]);
    expect(text.split('\n')).toEqual([
      'Run r stopped before the run started: Ctrl-C came while its processes were starting.',
      '  consumer-1 was still loading: the Ctrl-C ended it before it could start work.',
      'The other 1 processes exited 0.',
    ]);
  });

  it('without a Ctrl-C, a process killed by a signal is a failure, named with its signal', () => {
    const text = endSummary('r', null, 0, false, children, [
      { code: null, signal: 'SIGKILL' },
      { code: 1, signal: null },
    ]);
    expect(text.split('\n')).toEqual([
      'run r did not join (no status)',
      '  consumer-1 was killed by SIGKILL',
      '  producer-1 exited with code 1',
    ]);
  });
});
