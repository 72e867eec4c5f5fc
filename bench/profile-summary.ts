/**
 * Summarises `node --cpu-prof` profiles (as `npm run bench -- --cpu-prof` writes them): where each
 * process's busy time went, by package and by function, so two contenders' profiles compare side by
 * side. Usage: npm run bench:profile -- <dir or .cpuprofile files> [--top N] [--after-ms N]
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';
import { parseArgs } from 'node:util';
import { summarise, type Profile } from './profile.js';

function profileFiles(paths: string[]): string[] {
  return paths.flatMap((p) =>
    statSync(p).isDirectory()
      ? readdirSync(p)
          .filter((f) => f.endsWith('.cpuprofile'))
          .sort()
          .map((f) => join(p, f))
      : [p],
  );
}

function main(): void {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { top: { type: 'string', default: '15' }, 'after-ms': { type: 'string', default: '0' } },
  });
  const top = Number(values.top);
  const afterMs = Number(values['after-ms']);
  if (positionals.length === 0 || !Number.isInteger(top) || top < 1 || !(afterMs >= 0)) {
    process.stderr.write(
      'Usage: npm run bench:profile -- <dir or .cpuprofile files> [--top N] [--after-ms N]\n',
    );
    process.exit(2);
  }
  for (const file of profileFiles(positionals)) {
    const s = summarise(file, JSON.parse(readFileSync(file, 'utf8')) as Profile, afterMs);
    const pct = (ms: number) => ((100 * ms) / s.busyMs).toFixed(1).padStart(5);
    process.stdout.write(`\n${basename(file)}: ${s.busyMs} ms busy\n`);
    for (const p of s.byPlace.slice(0, top)) process.stdout.write(`  ${pct(p.ms)} %  ${p.place}\n`);
    process.stdout.write('  top functions (self time):\n');
    for (const f of s.byFunction.slice(0, top))
      process.stdout.write(`  ${pct(f.ms)} %  ${f.fn}  [${f.place}]\n`);
  }
}

main();
