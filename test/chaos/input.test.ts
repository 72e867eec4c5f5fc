import { describe, it } from 'vitest';
import { runScenario } from './run-scenario.js';

describe('chaos: input and security', () => {
  it(
    '12 1,000 malformed payloads refused with a reason; malformed jobs in Redis fail once',
    () => runScenario('bad-input'),
    120_000,
  );
  it('13 the same idempotency key 3 times: exactly one job', () => runScenario('idempotency'), 60_000);
  it(
    '13b the same key after its job was trimmed: still one job',
    () => runScenario('idempotency-after-trim'),
    60_000,
  );
  it(
    'TLS with a password works; a wrong CA or password ends start-up with a clear error; no secret in any output',
    () => runScenario('tls-auth'),
    120_000,
  );
  it('a user restricted to the documented ACL runs a whole job run', () => runScenario('acl'), 120_000);
});
