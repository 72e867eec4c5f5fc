import { putJobId } from '../shared/keys.js';
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';

/** One run of a handler: from its `start` line to its `end` line (none when its process died first). */
export type Execution = {
  pid: number;
  attempt: number;
  start: number;
  end: number | null;
  outcome: 'ok' | 'fail' | 'abort' | null;
};

/** Reads the lines appended to a file since the last call (a cut last line waits for the next). */
class FileTail {
  private offset = 0;
  private rest = '';

  constructor(private readonly file: string) {}

  lines(): string[] {
    if (!existsSync(this.file)) return [];
    const fd = openSync(this.file, 'r');
    try {
      const size = fstatSync(fd).size;
      if (size <= this.offset) return [];
      const buf = Buffer.alloc(size - this.offset);
      const n = readSync(fd, buf, 0, buf.length, this.offset);
      this.offset += n;
      const text = this.rest + buf.subarray(0, n).toString('utf8');
      const lines = text.split('\n');
      this.rest = lines.pop() ?? '';
      return lines;
    } finally {
      closeSync(fd);
    }
  }
}

type TagEntry = {
  executions: Map<string, Execution[]>;
  callbackStarts: number[];
  callbackEnds: number[];
};

/** The consumers' side of the ledger (soak-jobs.ts), indexed by run tag; a retired run's tag is forgotten. */
export class HandlerLedger {
  private readonly tail: FileTail;
  private readonly tags = new Map<string, TagEntry>();

  constructor(file: string) {
    this.tail = new FileTail(file);
  }

  refresh(): this {
    for (const line of this.tail.lines()) {
      const f = line.split(' ');
      const e = f[1] ? this.entry(f[1]) : undefined;
      if (!e) continue;
      if (f[0] === 'start' && f.length === 6) {
        const list = e.executions.get(f[2]!) ?? [];
        list.push({
          pid: Number(f[3]),
          attempt: Number(f[4]),
          start: Number(f[5]),
          end: null,
          outcome: null,
        });
        e.executions.set(f[2]!, list);
      } else if (f[0] === 'end' && f.length === 6) {
        const open = e.executions.get(f[2]!)?.findLast((x) => x.pid === Number(f[3]) && x.end === null);
        if (open) {
          open.end = Number(f[5]);
          open.outcome = f[4] as Execution['outcome'];
        }
      } else if (f[0] === 'cb-start') e.callbackStarts.push(Number(f[4]));
      else if (f[0] === 'cb-end') e.callbackEnds.push(Number(f[4]));
    }
    return this;
  }

  executions(tag: string): ReadonlyMap<string, Execution[]> {
    return this.entry(tag).executions;
  }

  callbacks(tag: string): { starts: number; ends: number } {
    const e = this.entry(tag);
    return { starts: e.callbackStarts.length, ends: e.callbackEnds.length };
  }

  forget(tag: string): void {
    this.tags.delete(tag);
  }

  private entry(tag: string): TagEntry {
    let e = this.tags.get(tag);
    if (!e) this.tags.set(tag, (e = { executions: new Map(), callbackStarts: [], callbackEnds: [] }));
    return e;
  }
}

/** The library producers' side of the ledger (library-producer/main.ts): every put that resolved, by tag. */
export class PutLedger {
  private readonly tail: FileTail;
  private readonly resolvedByTag = new Map<string, Set<string>>();
  private readonly notesByTag = new Map<string, string[]>();

  constructor(file: string) {
    this.tail = new FileTail(file);
  }

  refresh(): this {
    for (const line of this.tail.lines()) {
      const f = line.split(' ');
      if (f[0] === 'put' && f[1] && f[2]) {
        let set = this.resolvedByTag.get(f[1]);
        if (!set) this.resolvedByTag.set(f[1], (set = new Set()));
        set.add(f[2]);
      } else if ((f[0] === 'reject' || f[0] === 'refused' || f[0] === 'done') && f[1]) {
        const notes = this.notesByTag.get(f[1]) ?? [];
        notes.push(f.slice(0, 1).concat(f.slice(2)).join(' '));
        this.notesByTag.set(f[1], notes);
      }
    }
    return this;
  }

  resolved(tag: string): ReadonlySet<string> {
    return this.resolvedByTag.get(tag) ?? new Set();
  }

  /** reject / refused / done lines of the tag's producers (without the tag). */
  notes(tag: string): readonly string[] {
    return this.notesByTag.get(tag) ?? [];
  }

  forget(tag: string): void {
    this.resolvedByTag.delete(tag);
    this.notesByTag.delete(tag);
  }
}

/**
 * What a CLI producer (producers/main.ts at LOG_LEVEL=debug) was told, from its log: it logs `put`
 * with `sent` only after putMany resolved, and ids are `<run>+<n>+<instance>+<seq>` (its "registered"
 * line carries the run's id prefix), its instance being `<id>~<n>` after a restart (its "registered
 * again" line carries `incarnation`).
 */
export function cliResolved(output: string): string[] {
  let producerId: string | undefined;
  let idPrefix: string | undefined;
  let incarnation = 1;
  let sent = 0;
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    let rec: { msg?: string; sent?: number; producerId?: string; incarnation?: number; idPrefix?: string };
    try {
      rec = JSON.parse(line) as typeof rec;
    } catch {
      continue; // a line cut by a SIGKILL
    }
    producerId ??= rec.producerId;
    if (typeof rec.idPrefix === 'string') idPrefix = rec.idPrefix;
    if (typeof rec.incarnation === 'number') incarnation = rec.incarnation;
    if (rec.msg === 'put' && typeof rec.sent === 'number') sent = Math.max(sent, rec.sent);
  }
  if (!producerId || !idPrefix) return [];
  const instance = incarnation > 1 ? `${producerId}~${incarnation}` : producerId;
  return Array.from({ length: sent }, (_, i) => putJobId(idPrefix, instance, i));
}

/** How many "run joined" lines in a process's log are about `runId` at or after `since` (ms). */
export function joinLines(runId: string, output: string, since: number): number {
  let n = 0;
  for (const line of output.split('\n')) {
    if (!line.includes('"msg":"run joined"')) continue;
    try {
      const rec = JSON.parse(line) as { joinedRun?: string; runId?: string; time?: number };
      if ((rec.joinedRun ?? rec.runId) === runId && (rec.time ?? 0) >= since) n++;
    } catch {
      // a cut line
    }
  }
  return n;
}
