import { existsSync, statSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Cluster } from 'ioredis';
import type { SoakContext } from '../context.js';
import { skipped, type Inject } from './common.js';

/** Faults of Redis itself: its script cache, its clients, its process (or a cluster master's). */
export const redisFaults = {
  // A flurry for 1-3 s: one flush is an instant, and it matters only while producers are mid-put.
  'script-flush': async (ctx, rng) => {
    const aimed = await whilePutting(ctx);
    const until = Date.now() + rng.int(1_000, 3_000);
    let times = 0;
    while (Date.now() < until) {
      for (const node of await ctx.world.masters()) await node.script('FLUSH');
      times++;
      await sleep(rng.int(5, 20));
    }
    return { applied: true, target: `${times} flushes on every master${aimed ? ', mid-put' : ''}` };
  },
  'client-kill': async (ctx) => {
    let n = 0;
    for (const node of await ctx.world.masters())
      n += Number(await node.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes'));
    return { applied: n > 0, target: `${n} connection(s)` };
  },
  'client-kill-one': async (ctx, rng) => {
    const [node] = await ctx.world.masters();
    const list = String(await node!.call('CLIENT', 'LIST', 'TYPE', 'normal'));
    const conns = [...list.matchAll(/^id=(\d+) .*?name=(conveyor:\S+)/gm)].map((m) => ({
      id: m[1]!,
      name: m[2]!,
    }));
    if (conns.length === 0) return skipped('no conveyor connection');
    const victim = rng.pick(conns);
    await node!.call('CLIENT', 'KILL', 'ID', victim.id);
    return { applied: true, target: victim.name };
  },
  'redis-restart': async (ctx, rng) => {
    const redis = ctx.world.redis;
    if (!redis) return skipped('no single Redis');
    const downMs = rng.int(200, 1_500);
    const aimed = await whilePutting(ctx);
    await redis.crash();
    await sleep(downMs);
    await redis.start();
    return { applied: true, target: `down ${downMs} ms${aimed ? ', mid-put' : ''}` };
  },
  'redis-pause': async (ctx, rng) => {
    const redis = ctx.world.redis;
    if (!redis) return skipped('no single Redis');
    const ms = rng.int(1_000, 4_000);
    redis.pause();
    try {
      await sleep(ms);
    } finally {
      redis.resume();
    }
    return { applied: true, target: `${ms} ms` };
  },
  'master-kill': async (ctx, rng) => {
    const cluster = ctx.world.cluster;
    if (!cluster) return skipped('not a cluster');
    // Only a master whose replica is up: a replica-less master's death takes its slots down for good.
    const lines = String(await (ctx.world.client as Cluster).cluster('NODES'))
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split(' '));
    const masters = lines.filter(
      (f) =>
        f[2]!.includes('master') &&
        !f[2]!.includes('fail') &&
        lines.some((r) => r[3] === f[0] && r[2]!.includes('slave') && !r[2]!.includes('fail')),
    );
    if (masters.length === 0) return skipped('no master with a live replica left');
    const port = Number(/:(\d+)@/.exec(rng.pick(masters)[1]!)?.[1]);
    const node = cluster.nodes.find((n) => n.port === port);
    if (!node) return skipped(`no node on port ${port}`);
    node.process.kill('SIGKILL');
    return { applied: true, target: `master :${port}` };
  },
} satisfies Record<string, Inject>;

/**
 * Waits (at most 8 s) for a moment when library producers are putting, seen as their ledger growing:
 * a fault on the script cache matters only to puts in flight. False when none came.
 */
async function whilePutting(ctx: SoakContext): Promise<boolean> {
  const size = () => (existsSync(ctx.world.files.puts) ? statSync(ctx.world.files.puts).size : 0);
  const deadline = Date.now() + 8_000;
  let last = size();
  while (Date.now() < deadline) {
    await sleep(25);
    const now = size();
    if (now > last) return true;
    last = now;
  }
  return false;
}
