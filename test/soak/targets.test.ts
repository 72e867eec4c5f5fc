import { describe, expect, it } from 'vitest';
import { isPutOfRunId } from '../../soak/faults/jobs.js';
import { callbackJobId, keyedJobId, putJobId, runIdPrefix } from '../../shared/keys.js';

describe('soak fault targets', () => {
  it("a retry fault picks the run id's put jobs of any creation, not its callbacks nor another run's", () => {
    const first = runIdPrefix('nightly', 3);
    const again = runIdPrefix('nightly', 9);
    expect(isPutOfRunId(putJobId(first, 'p1', 0), 'nightly')).toBe(true);
    expect(isPutOfRunId(putJobId(again, 'p1~2', 17), 'nightly')).toBe(true);
    expect(isPutOfRunId(keyedJobId(again, 'order-7'), 'nightly')).toBe(true);
    expect(isPutOfRunId(callbackJobId(again, 'on-join'), 'nightly')).toBe(false);
    expect(isPutOfRunId(putJobId(runIdPrefix('nightly.k', 1), 'p1', 0), 'nightly')).toBe(false);
    expect(isPutOfRunId(putJobId(runIdPrefix('night', 1), 'p1', 0), 'nightly')).toBe(false);
    expect(isPutOfRunId('nightly.p1.0', 'nightly')).toBe(false);
  });
});
