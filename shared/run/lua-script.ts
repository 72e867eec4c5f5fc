import { createHash } from 'node:crypto';
import type { RedisClient } from '../redis.js';

export type LuaScript = (
  redis: RedisClient,
  keys: readonly string[],
  args: readonly (string | number)[],
) => Promise<unknown>;

/** A Lua script called by SHA, loaded on first use (and again after a Redis restart flushes the cache). */
export function luaScript(source: string): LuaScript {
  const sha = createHash('sha1').update(source).digest('hex');
  return async (redis, keys, args) => {
    try {
      return await redis.evalsha(sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (err instanceof Error && err.message.startsWith('NOSCRIPT')) {
        return redis.eval(source, keys.length, ...keys, ...args);
      }
      throw err;
    }
  };
}
