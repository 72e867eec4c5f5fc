import type { Redis } from 'ioredis';

/** Empties the server between runs: data, cached scripts and command statistics. */
export async function resetRedis(redis: Redis): Promise<void> {
  await redis.flushall('SYNC');
  await redis.script('FLUSH');
  await redis.config('RESETSTAT');
}

function parseInfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    const i = line.indexOf(':');
    if (i > 0 && !line.startsWith('#')) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

export type MemorySample = { usedMemory: number; dataset: number };

export async function memory(redis: Redis): Promise<MemorySample> {
  const info = parseInfo(await redis.info('memory'));
  return { usedMemory: Number(info.get('used_memory')), dataset: Number(info.get('used_memory_dataset')) };
}

export type CommandStat = { command: string; calls: number; usec: number; usecPerCall: number };

/** INFO commandstats, busiest (by total time) first. */
export async function commandStats(redis: Redis): Promise<CommandStat[]> {
  const info = parseInfo(await redis.info('commandstats'));
  const stats: CommandStat[] = [];
  for (const [key, value] of info) {
    if (!key.startsWith('cmdstat_')) continue;
    const f = Object.fromEntries(value.split(',').map((kv) => kv.split('=') as [string, string]));
    stats.push({
      command: key.slice(8),
      calls: Number(f.calls),
      usec: Number(f.usec),
      usecPerCall: Number(f.usec_per_call),
    });
  }
  return stats.sort((a, b) => b.usec - a.usec);
}

/** CPU seconds (user + system) the server has used since it started, from INFO cpu. */
export async function cpuSeconds(redis: Redis): Promise<number> {
  const info = parseInfo(await redis.info('cpu'));
  return Number(info.get('used_cpu_user') ?? 0) + Number(info.get('used_cpu_sys') ?? 0);
}

export async function redisVersion(redis: Redis): Promise<string> {
  return parseInfo(await redis.info('server')).get('redis_version') ?? '?';
}
