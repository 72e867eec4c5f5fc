import { describe, expect, it } from 'vitest';
import { RUN_SCRIPT_KEYS, SHARD_SCRIPT_KEYS } from '../../shared/run/script-keys.js';
import * as scripts from '../../shared/run/scripts.js';

/** Commands whose first argument is not a key. */
const KEYLESS = new Set(['TIME', 'PUBLISH']);

/**
 * Every key a run-protocol script touches must arrive in KEYS: Redis Cluster routes a script by its
 * declared keys, and ACL key patterns are only honest when no key name is built inside a script.
 * Each `redis.call` must name its key through KEYS or a local taken straight from KEYS.
 */
describe('run protocol scripts declare every key', () => {
  const sources = Object.entries(scripts).filter(
    (e): e is [string, string] => typeof e[1] === 'string' && e[0].endsWith('Lua'),
  );

  it('has scripts to check', () => {
    expect(sources.length).toBeGreaterThan(10);
  });

  it.each(sources)('%s', (_name, lua) => {
    const fromKeys = new Set<string>();
    // `local A, B = KEYS[1], KEYS[2]` and `local x = KEYS[FIXED + 1]` (also `local id, jk = ARGV[i], KEYS[...]`)
    for (const m of lua.matchAll(/local ([\w, ]+) =\s*([^\n]+)/g)) {
      const names = m[1]!.split(',').map((s) => s.trim());
      const values = m[2]!.split(/,(?![^[]*\])/).map((s) => s.trim());
      names.forEach((n, i) => {
        if (values[i]?.startsWith('KEYS[')) fromKeys.add(n);
      });
    }
    const offenders: string[] = [];
    for (const m of lua.matchAll(/redis\.call\('(\w+)'(?:, ([^,)]+))?/g)) {
      const [, command, first] = m;
      if (KEYLESS.has(command!) || first === undefined) continue;
      const arg = first.trim();
      if (arg.startsWith('KEYS[') || fromKeys.has(arg)) continue;
      offenders.push(`${command} ${arg}`);
    }
    expect(offenders).toEqual([]);
  });
});

describe('run protocol scripts take their key order from one list', () => {
  it("binds every Lua local to its key's place in script-keys.ts, run keys and shard keys alike", () => {
    RUN_SCRIPT_KEYS.forEach((k, i) =>
      expect(scripts.heartbeatProducerLua).toContain(`local ${k.lua} = KEYS[${i + 1}]\n`),
    );
    SHARD_SCRIPT_KEYS.forEach((k, i) =>
      expect(scripts.putJobsLua).toContain(`local ${k.lua} = KEYS[${i + 1}]\n`),
    );
    const queueWide = RUN_SCRIPT_KEYS.flatMap((k, i) => ('queueWide' in k ? [`[${i + 1}] = true`] : []));
    expect(scripts.createRunLua).toContain(
      `local QUEUE_WIDE, RUN_KEY_COUNT = {${queueWide.join(', ')}}, ${RUN_SCRIPT_KEYS.length}`,
    );
    expect(scripts.putJobsLua).toContain(`local FIXED, RUN_OWNED = ${SHARD_SCRIPT_KEYS.length}, 8`);
  });
});
