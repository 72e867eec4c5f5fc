import { describe, it } from 'vitest';
import { runScenario } from './run-scenario.js';

describe('chaos: Redis faults', () => {
  it('6 CLIENT KILL every 2 s: nothing lost, work resumes', () => runScenario('client-kill'), 120_000);
  it(
    '7 Redis SIGKILLed and restarted with appendfsync always: no acknowledged job lost',
    () => runScenario('redis-crash-always'),
    120_000,
  );
  it(
    '7 ... with appendfsync everysec: what was lost is reported',
    () => runScenario('redis-crash-everysec'),
    120_000,
  );
  it(
    '7 ... without persistence: no silent join over the lost jobs',
    () => runScenario('redis-crash-none'),
    120_000,
  );
  it('8 Redis SIGSTOPped shorter, then longer than the lock', () => runScenario('redis-pause'), 120_000);
  it(
    '9 Redis down when every process starts: they wait, say so, and run',
    () => runScenario('redis-late'),
    120_000,
  );
  it(
    '11 maxmemory under noeviction: adds refused loudly, accepted jobs kept; evicting Redis refused',
    () => runScenario('maxmemory'),
    120_000,
  );
});
