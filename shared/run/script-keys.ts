/**
 * The keys the run scripts receive, in KEYS order, written once: the scripts' Lua locals, their
 * queue-wide and run-owned ranges, and the store's key arrays are all generated from these lists, so
 * a reordering cannot put one out of step with another.
 */

type ScriptKey = {
  /** The key's field in RunKeys/ShardRunKeys (keys.ts), or in the store's queue-wide keys. */
  readonly name: string;
  /** The Lua local it is bound to. */
  readonly lua: string;
};

/** A run script's keys (the queue's slot). `queueWide`: the queue's, not the run's (no TTL, never deleted with it). */
export const RUN_SCRIPT_KEYS = [
  { name: 'meta', lua: 'META' },
  { name: 'producers', lua: 'PRODUCERS' },
  { name: 'leases', lua: 'LEASES' },
  { name: 'runIndex', lua: 'RUN_INDEX', queueWide: true },
  { name: 'credited', lua: 'CREDITED' },
  { name: 'unsettled', lua: 'UNSETTLED' },
  { name: 'pendingRuns', lua: 'PENDING', queueWide: true },
  { name: 'expiries', lua: 'EXPIRIES', queueWide: true },
  { name: 'consumers', lua: 'CONSUMERS' },
  { name: 'beats', lua: 'BEATS' },
  { name: 'cancel', lua: 'CANCEL' },
  { name: 'callbacksDue', lua: 'CALLBACKS_DUE', queueWide: true },
  { name: 'creations', lua: 'CREATIONS', queueWide: true },
] as const satisfies readonly (ScriptKey & { queueWide?: boolean })[];

/**
 * A shard script's fixed keys (the shard's slot), per-call keys after them. `runOwned`: the run's
 * own, expiring with it; they come first, so a script reaches them as KEYS[1..RUN_OWNED].
 */
export const SHARD_SCRIPT_KEYS = [
  { name: 'meta', lua: 'SMETA', runOwned: true },
  { name: 'open', lua: 'OPEN', runOwned: true },
  { name: 'keyed', lua: 'KEYED', runOwned: true },
  { name: 'producedBy', lua: 'PRODUCED_BY', runOwned: true },
  { name: 'suspect', lua: 'SUSPECT', runOwned: true },
  { name: 'fenced', lua: 'FENCED', runOwned: true },
  { name: 'cancelled', lua: 'CANCELLED', runOwned: true },
  { name: 'results', lua: 'RESULTS', runOwned: true },
  { name: 'countedCompleted', lua: 'COUNTED_COMPLETED' },
  { name: 'countedFailed', lua: 'COUNTED_FAILED' },
] as const satisfies readonly (ScriptKey & { runOwned?: boolean })[];

export type RunScriptKeyName = (typeof RUN_SCRIPT_KEYS)[number]['name'];
export type ShardScriptKeyName = (typeof SHARD_SCRIPT_KEYS)[number]['name'];

/** The run's keys, in the order run scripts receive them. */
export const RUN_KEY_NAMES: readonly RunScriptKeyName[] = RUN_SCRIPT_KEYS.map((k) => k.name);
/** A shard's fixed keys, in the order shard scripts receive them (per-call keys follow). */
export const SHARD_KEY_NAMES: readonly ShardScriptKeyName[] = SHARD_SCRIPT_KEYS.map((k) => k.name);
/** How many fixed keys a shard script receives: its per-call keys start at KEYS[SHARD_FIXED + 1]. */
export const SHARD_FIXED = SHARD_SCRIPT_KEYS.length;
/** A shard's keys that belong to the run (the rest are the queue's), which expire with it. */
export const SHARD_RUN_KEY_NAMES = SHARD_SCRIPT_KEYS.filter((k) => 'runOwned' in k).map((k) => k.name);
/** How many of a shard script's keys are the run's own: KEYS[1..SHARD_RUN_KEYS]. */
export const SHARD_RUN_KEYS = SHARD_RUN_KEY_NAMES.length;
if (SHARD_SCRIPT_KEYS.slice(0, SHARD_RUN_KEYS).some((k) => !('runOwned' in k)))
  throw new Error(
    'SHARD_SCRIPT_KEYS: the run-owned keys must come first (keep_ttl expires KEYS[1..RUN_OWNED])',
  );

/** Lua binding each key's local to its KEYS slot: `local META = KEYS[1]`... */
export function luaKeyLocals(keys: readonly ScriptKey[]): string {
  return keys.map((k, i) => `local ${k.lua} = KEYS[${i + 1}]`).join('\n');
}

/** The store's KEYS for a script, in the list's order, from a record of every key by name. */
export function keysInOrder<N extends string>(
  keys: readonly { readonly name: N }[],
  values: Readonly<Record<N, string>>,
): string[] {
  return keys.map((k) => values[k.name]);
}

/** `{[4] = true, ...}`: the run script KEYS slots that are the queue's, not the run's. */
export function luaQueueWideSet(): string {
  const slots = RUN_SCRIPT_KEYS.flatMap((k, i) => ('queueWide' in k ? [`[${i + 1}] = true`] : []));
  return `{${slots.join(', ')}}`;
}
