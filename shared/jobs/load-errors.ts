import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The package.json that decides whether `file` is an ES module, and its "type" (undefined: CommonJS). */
function packageOf(file: string): { path: string; type: string | undefined } | null {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const path = join(dir, 'package.json');
    if (existsSync(path)) {
      try {
        return { path, type: (JSON.parse(readFileSync(path, 'utf8')) as { type?: string }).type };
      } catch {
        return { path, type: undefined };
      }
    }
    if (dirname(dir) === dir) return null;
  }
}

/** What Node and tsx say when an ES module is loaded as CommonJS, or CommonJS requires one. */
const LOADED_AS_COMMONJS =
  /Cannot require\(\) ES Module|ERR_REQUIRE|import statement outside a module|Unexpected token 'export'|await is only valid/;

/**
 * Why a job module failed to load, in one line a person can act on: a CommonJS project (conveyor is
 * an ES module package) says how to make it ESM, a syntax error names the file's line and column
 * (Node's own message for an ES module has neither), anything else its first line.
 */
export function explainLoadError(spec: string, url: string, cwd: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const file = url.startsWith('file:') ? fileURLToPath(url) : null;
  const where = (path: string) => relative(cwd, path) || path;
  if (file && /\.(js|ts)$/.test(file) && LOADED_AS_COMMONJS.test(message)) {
    const pkg = packageOf(file);
    if (pkg && pkg.type !== 'module')
      return (
        `"${spec}" is loaded as CommonJS because ${where(pkg.path)} has ${pkg.type ? `"type": "${pkg.type}"` : 'no "type"'}, ` +
        `and conveyor is an ES module package: set "type": "module" in ${where(pkg.path)} (npm pkg set type=module), or name the file .mjs/.mts.`
      );
  }
  // tsx (esbuild) puts the location on the lines after "Transform failed with N error(s):".
  const transform = /^Transform failed with \d+ errors?:\n(.+?):(\d+):(\d+): ERROR: (.+)$/m.exec(message);
  if (transform)
    // esbuild counts columns from 0; editors (and node --check) from 1.
    return `syntax error in ${where(transform[1]!)} at line ${transform[2]}, column ${Number(transform[3]) + 1}: ${transform[4]}`;
  if (err instanceof SyntaxError && file) {
    const at = syntaxErrorAt(file);
    if (at) return `syntax error in ${where(file)} at line ${at.line}, column ${at.column}: ${message}`;
  }
  return message.split('\n')[0]!;
}

/** Where `node --check` finds the file's syntax error (it prints the line and a caret under the column). */
function syntaxErrorAt(file: string): { line: number; column: number } | null {
  const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 10_000 });
  const lines = check.stderr?.split('\n') ?? [];
  const head = lines.findIndex((l) => l.startsWith(`${file}:`));
  if (head === -1) return null;
  const line = Number(lines[head]!.slice(file.length + 1));
  const caret = lines[head + 2]?.indexOf('^') ?? -1;
  return Number.isInteger(line) && caret >= 0 ? { line, column: caret + 1 } : null;
}
