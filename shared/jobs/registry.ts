import type { AnyJobDefinition } from './define.js';
import { defaultPayloadLimits, payloadProblem, type PayloadLimits } from './payload-guard.js';

/** Where a job type was loaded from (JOB_MODULES), so a sandbox can load it again. */
export type JobSource = { spec: string; url: string; cwd: string };

export type Validation = { ok: true; payload: unknown } | { ok: false; reason: string };

/** The job types a process knows, by name. */
export class JobRegistry {
  private readonly byName = new Map<string, AnyJobDefinition>();
  private readonly sources = new Map<string, JobSource>();

  constructor(
    definitions: readonly AnyJobDefinition[] = [],
    private readonly limits: PayloadLimits = defaultPayloadLimits,
  ) {
    for (const d of definitions) this.register(d);
  }

  /** `source`: the module it came from, needed to run a type with `isolation` in a sandbox. */
  register(definition: AnyJobDefinition, source?: JobSource): this {
    if (this.byName.has(definition.name))
      throw new Error(`Job type "${definition.name}" is registered twice.`);
    this.byName.set(definition.name, definition);
    if (source) this.sources.set(definition.name, source);
    return this;
  }

  sourceOf(name: string): JobSource | undefined {
    return this.sources.get(name);
  }

  get(name: string): AnyJobDefinition | undefined {
    return this.byName.get(name);
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  all(): AnyJobDefinition[] {
    return [...this.byName.values()];
  }

  /**
   * Checks a payload for a type: known type, plain bounded JSON, then the type's own schema.
   * `measureSize: false` skips re-serialising to measure it (a consumer reading what Redis already holds).
   */
  validate(name: string, payload: unknown, opts: { measureSize?: boolean } = {}): Validation {
    const def = this.byName.get(name);
    if (!def) return { ok: false, reason: `unknown job type "${name}" (known: ${this.names().join(', ')})` };
    const problem = payloadProblem(payload, this.limits, opts.measureSize ?? true);
    if (problem) return { ok: false, reason: problem };
    const parsed = def.schema.safeParse(payload);
    if (!parsed.success) {
      const reason = parsed.error.issues
        .map((i) => `${i.path.length ? i.path.join('.') : 'payload'}: ${i.message}`)
        .join('; ');
      return { ok: false, reason };
    }
    return { ok: true, payload: parsed.data };
  }
}
