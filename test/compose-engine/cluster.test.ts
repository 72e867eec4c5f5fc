import { mkdirSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { afterAll, describe, expect, it, onTestFailed } from 'vitest';
import { projectRoot } from '../../shared/roles.js';
import { pollUntil } from '../helpers/redis.js';
import { expectExactTotals, expectExitedZero, quickRun } from './checks.js';
import { Stack } from './stack.js';

const shape = { producers: 3, consumers: 2, jobs: 20 };
const NODES = [1, 2, 3, 4, 5, 6].map((n) => `redis-node-${n}`);

/** `CLUSTER NODES` as one node sees it: name (service), role flags, and whether it serves slots. */
async function clusterNodes(stack: Stack, from: string) {
  const out = await stack.mustCompose(['exec', '-T', from, 'redis-cli', 'cluster', 'nodes']);
  return out
    .trim()
    .split('\n')
    .map((line) => {
      const f = line.split(' ');
      return {
        host: (f[1] ?? '').split(',')[1] ?? '?',
        flags: f[2] ?? '',
        link: f[7] ?? '',
        slots: f.slice(8).join(' '),
      };
    });
}

describe('docker compose --profile cluster: SHARDS=3 over a 6-node Redis Cluster', () => {
  let stack: Stack;
  afterAll(async () => {
    if (stack) expect((await stack.down()).code).toBe(0);
  });

  it('forms the cluster and joins a run over 3 shards with exact totals', async () => {
    stack = await Stack.create(
      'conveyor-t-cluster',
      quickRun(shape, {
        COMPOSE_PROFILES: 'cluster',
        REDIS_URL: 'redis+cluster://redis-node-1:6379,redis-node-2:6379,redis-node-3:6379',
        SHARDS: '3',
        PRODUCE_INTERVAL_MS: '300',
      }),
    );
    onTestFailed(async () => console.log(await stack.logs()));
    await stack.up();
    expect((await stack.containers('redis-cluster-create')).map((c) => c.exitCode)).toEqual([0]);
    const nodes = await clusterNodes(stack, 'redis-node-2');
    expect(nodes.filter((n) => n.flags.includes('master') && n.slots).length).toBe(3);
    expect(nodes.filter((n) => n.flags.includes('slave')).length).toBe(3);
    await stack.waitJoined('run-1');
    await expectExitedZero(stack, ['producer', 'consumer']);
    // Read once every process is gone: a consumer records `cancelled` a moment after the join.
    const status = await stack.status('run-1');
    expectExactTotals(status, shape.producers * shape.jobs);
    expect(status.shards).toHaveLength(3);
    for (const sh of status.shards) {
      expect(sh.closed).toBe(true);
      expect(sh.produced).toBeGreaterThan(0);
    }
    expect(status.consumers.map((c) => c.state)).toEqual(['cancelled', 'cancelled']);
  });

  // The killed container's name stops resolving on the compose network, and it is one of the
  // startup nodes in REDIS_URL: a worker's blocking connection that BullMQ reconnects after the
  // failover must still get through the other nodes (shared/redis.ts, CLUSTER_FAILOVER_OPTIONS).
  it('a master container killed mid-run: its replica takes over and the run joins', async () => {
    onTestFailed(async () => console.log(await stack.logs()));
    const before = await clusterNodes(stack, 'redis-node-2');
    // The master serving slot 0 (redis-node-1 as created); redis-node-2, the witness, is never it.
    const victim = before.find((n) => n.flags.includes('master') && /(^| )0-/.test(n.slots))!.host;
    expect(victim).not.toBe('redis-node-2');
    expect(NODES).toContain(victim);
    // The next run (RUN_ID=auto): kill the master once producers are well into it.
    await stack.up();
    await pollUntil('run-2 to have 15 jobs produced', async () =>
      (await stack.status('run-2')).jobs.produced >= 15 ? true : undefined,
    );
    await stack.mustCompose(['kill', '-s', 'SIGKILL', victim]);
    const killedAt = Date.now();
    // The node the victim was chosen from (never the victim) watches the failover.
    const witness = 'redis-node-2';
    const promoted = await pollUntil(
      `a replica of ${victim} to take over`,
      async () => {
        const nodes = await clusterNodes(stack, witness);
        const serving = nodes.filter(
          (n) => n.flags.includes('master') && !n.flags.includes('fail') && n.slots,
        );
        const info = await stack.mustCompose(['exec', '-T', witness, 'redis-cli', 'cluster', 'info']);
        return serving.length === 3 &&
          !serving.some((n) => n.host === victim) &&
          /cluster_state:ok/.test(info)
          ? serving.map((n) => n.host)
          : undefined;
      },
      60_000,
      500,
    );
    const tookOverMs = Date.now() - killedAt;
    await stack.waitJoined('run-2', 180_000);
    // Reported, not required: a producer or consumer may have been restarted through the failover.
    const containers = [...(await stack.waitExited('producer')), ...(await stack.waitExited('consumer'))];
    const status = await stack.status('run-2');
    const ledger = {
      victim,
      mastersAfter: promoted,
      tookOverMs,
      join: status.join,
      jobs: status.jobs,
      shards: status.shards,
      producers: status.producers.list.map((p) => ({ id: p.id, state: p.state, produced: p.produced })),
      consumers: status.consumers.map((c) => ({
        id: c.id,
        state: c.state,
        done: c.jobsDone,
        failed: c.jobsFailed,
      })),
      containers: containers.map((c) => ({ name: c.name, exitCode: c.exitCode, restarts: c.restartCount })),
    };
    mkdirSync(resolve(projectRoot, 'test/artifacts'), { recursive: true });
    writeFileSync(
      resolve(projectRoot, 'test/artifacts/compose-failover-ledger.json'),
      JSON.stringify(ledger, null, 2),
    );
    console.log(`failover ledger: ${JSON.stringify(ledger)}`);
    expect(status.join.state).toBe('joined');
    expect(status.shards).toHaveLength(3);
    // Every job a producer acknowledged is accounted for: finished, or reported lost by the ledger.
    expect(status.jobs.unfinished).toBe(0);
  });
});
