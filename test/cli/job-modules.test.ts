import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { explainLoadError } from '../../shared/jobs/load-errors.js';
import { projectRoot } from '../../shared/roles.js';
import { exitOf, killLeftovers, spawnTracked } from '../helpers/processes.js';
import { useTempDir } from '../helpers/temp-dir.js';

const BAD_SYNTAX = 'export const x = {\n  a: 1,,\n};\n';
const PLAIN_JOB = "export const slow = { name: 'slow', schema: {}, handler: async () => 1 };\n";

/** JOB_MODULES that cannot load: the message says where and what to do. */
describe('job modules that do not load', () => {
  const dir = useTempDir('conveyor-modules-');
  // A consumer that loaded its module after all would wait for Redis for ever: a leak fails the test.
  afterEach(async () => expect(await killLeftovers()).toEqual([]));
  const project = (name: string, type: string, files: Record<string, string>) => {
    const root = join(dir.path, name);
    mkdirSync(root);
    writeFileSync(join(root, 'package.json'), JSON.stringify({ name, type }));
    for (const [file, text] of Object.entries(files)) writeFileSync(join(root, file), text);
    return root;
  };
  /**
   * A consumer started in the module's project, as a user starts it there, with tsx's ES module
   * loader only: what the installed package registers for a TypeScript job module.
   */
  const consumerWith = async (module: string) => {
    const p = spawnTracked(
      'consumer',
      process.execPath,
      [
        '--import',
        join(projectRoot, 'node_modules/tsx/dist/esm/index.mjs'),
        join(projectRoot, 'consumers/main.ts'),
      ],
      { JOB_MODULES: module, REDIS_URL: 'redis://127.0.0.1:1' },
      { cwd: dirname(module) },
    );
    expect((await exitOf(p)).code, p.output()).toBe(2);
    return p.output();
  };

  it('a TypeScript syntax error names the file, line and column', async () => {
    const root = project('esm', 'module', { 'bad.ts': BAD_SYNTAX });
    expect(await consumerWith(join(root, 'bad.ts'))).toMatch(
      /cannot load ".*bad\.ts": syntax error in .*bad\.ts at line 2, column 8: Expected identifier but found ","/,
    );
  });

  it('a JavaScript syntax error names the line and column Node leaves out of an ES module error', () => {
    const root = project('esm-js', 'module', { 'bad.js': BAD_SYNTAX });
    const file = join(root, 'bad.js');
    // What import() throws for it: the message only.
    const err = new SyntaxError("Unexpected token ','");
    expect(explainLoadError('./bad.js', pathToFileURL(file).href, root, err)).toBe(
      "syntax error in bad.js at line 2, column 8: Unexpected token ','",
    );
  });

  it('a module in a CommonJS project (npm init -y) says to make the project ESM', async () => {
    const root = project('cjs', 'commonjs', { 'slow.ts': PLAIN_JOB, 'slow.js': PLAIN_JOB });
    for (const file of ['slow.ts', 'slow.js'])
      expect(await consumerWith(join(root, file))).toMatch(
        /is loaded as CommonJS because .*package\.json has "type": "commonjs", and conveyor is an ES module package: set "type": "module"/,
      );
  });
});
