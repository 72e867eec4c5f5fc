import { expect, inject } from 'vitest';
import { scenarios } from '../../chaos/scenarios/index.js';
import { formatTable } from '../../chaos/table.js';

/** Runs one chaos scenario at its scaled-down size and fails with its table row and notes. */
export async function runScenario(id: string): Promise<void> {
  const binary = inject('redisServerBinary');
  if (!binary)
    throw new Error('chaos tests start their own redis-server: install one (apt-get install redis-server)');
  const scenario = scenarios.find((s) => s.id === id);
  if (!scenario) throw new Error(`no chaos scenario "${id}"`);
  const row = await scenario.run({ full: false, redisBinary: binary, log: () => undefined });
  expect(row.pass, formatTable([row])).toBe(true);
}
