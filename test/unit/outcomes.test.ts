import { describe, expect, it } from 'vitest';
import { decodeStored, encodeEnded, formatRunResults, slotOf } from '../../shared/run/outcomes.js';

describe('run results: stored outcomes and how commands print them', () => {
  it('tells a stored value from a failure record, whatever the value is', () => {
    for (const value of ['!failed', { outcome: 'failed' }, null, 0, '', [1]])
      expect(decodeStored(JSON.stringify(value))).toEqual({ outcome: 'completed', value });
    expect(decodeStored(encodeEnded('failed', 'boom', 1_000)!)).toEqual({ outcome: 'failed', error: 'boom' });
  });

  it('cuts a failure message to fit the per-job bound in bytes, and gives up when nothing fits', () => {
    const stored = encodeEnded('failed', 'é'.repeat(500), 100)!;
    expect(Buffer.byteLength(stored)).toBeLessThanOrEqual(100);
    const decoded = decodeStored(stored);
    expect(decoded.outcome).toBe('failed');
    expect(decoded.outcome === 'failed' && decoded.error).toMatch(/^é{20,}$/);
    expect(encodeEnded('cancelled', 'x', 10)).toBeNull();
  });

  it("prints gather's slots and status --results' lines", () => {
    const results = [
      { jobId: 'r+1+p+0', producer: 'p', outcome: 'cancelled' },
      { jobId: 'r+1+p+1', producer: 'p', outcome: 'completed', value: 1 },
      { jobId: 'r+1+p+2', producer: 'p', outcome: 'failed', error: 'boom' },
      { jobId: 'r+1+p+3', producer: 'p', outcome: 'removed' },
    ] as const;
    expect(results.map(slotOf)).toEqual([
      { outcome: 'cancelled' },
      1,
      { outcome: 'failed', error: 'boom' },
      { outcome: 'removed' },
    ]);
    expect(formatRunResults(results).split('\n')).toEqual([
      'r+1+p+0  cancelled',
      'r+1+p+1  completed  1',
      'r+1+p+2  failed     boom',
      'r+1+p+3  removed',
    ]);
  });
});
