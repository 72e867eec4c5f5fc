import { Redis, type Cluster } from 'ioredis';
import { queuePrefix } from '../../shared/keys.js';
import calculateSlot from 'cluster-key-slot';
import { Session, sleep, until, type Row, type ScenarioContext } from '../session.js';
import { finishRun, size } from './common.js';
import { runBaseline, runProducerKill } from './processes.js';

const SHARDS = 3;

/** 19. The baseline, unchanged, on a 3-master Redis Cluster with the queue spread over 3 shards. */
export const clusterBaseline = (ctx: ScenarioContext): Promise<Row> =>
  runBaseline(ctx, '19 baseline on a Redis Cluster, SHARDS=3', {
    cluster: { masters: 3, replicas: 0, shards: SHARDS },
  });

/**
 * 21. Row 10 on the cluster: a producer SIGKILLed mid-run leaves ids in flight on every shard; each
 * shard settles its share before it closes.
 */
export const clusterProducerKill = (ctx: ScenarioContext): Promise<Row> =>
  runProducerKill(ctx, '21 producer SIGKILLed mid-run on a Redis Cluster, SHARDS=3', {
    cluster: { masters: 3, replicas: 0, shards: SHARDS },
  });

/**
 * 20. SIGKILL, mid-run, the master holding the run's own slot (and a shard): its replica is promoted,
 * work resumes, the run joins. Replication is asynchronous, so writes the master acknowledged but had
 * not yet sent may be gone: the row reports what the ledger saw lost or doubled, and passes when the
 * run joined once and every loss is visible in the run's own figures (lostAcks), never silent.
 * `lagMs` > 0 (20b) first freezes the replica for that long while writes go on, so the failover
 * promotes a replica that is behind: what a slow replica link or a partition costs.
 */
export function clusterFailover(lagMs: number) {
  return async (ctx: ScenarioContext): Promise<Row> => {
    const name =
      lagMs > 0
        ? `20b failover to a replica ${lagMs / 1000} s behind, SHARDS=3`
        : '20 cluster master SIGKILLed mid-run (failover), SHARDS=3';
    const s = await Session.open(ctx, name, { cluster: { masters: 3, replicas: 1, shards: SHARDS } });
    try {
      const perProducer = size(ctx, 300, 5_000);
      const jobs = perProducer * 2;
      const env = {
        PRODUCERS: 2,
        JOBS: perProducer,
        BATCH_SIZE: 10,
        // Production outlasts the fault (and the frozen replica's lag) so writes land throughout.
        PRODUCE_INTERVAL_MS: size(ctx, 150, 20),
        CONCURRENCY: 6,
        JOB_PAYLOAD: '{"ms":5}',
      };
      for (let i = 0; i < 2; i++) s.consumer(env);
      s.producer(env);
      s.producer(env);
      await until(async () => (await s.audit()).completed >= jobs / 6, 60_000, 250);
      const slot = calculateSlot(queuePrefix(s.queue));
      const victim = await masterServing(s, slot);
      const replica = nodeOnPort(s, await replicaOf(s, victim));
      if (lagMs > 0) {
        // Freeze the replica and cut its link: the master goes on acknowledging writes it cannot send.
        replica.process.kill('SIGSTOP');
        const master = new Redis(victim, '127.0.0.1', { lazyConnect: true });
        try {
          await master.connect();
          await master.call('CLIENT', 'KILL', 'TYPE', 'replica');
        } finally {
          master.disconnect();
        }
        await sleep(lagMs);
      }
      const killedAt = Date.now();
      nodeOnPort(s, victim).process.kill('SIGKILL');
      if (lagMs > 0) replica.process.kill('SIGCONT');
      s.faults++;
      ctx.log(
        `  master :${victim} SIGKILLed${lagMs > 0 ? ` after its replica fell ${lagMs} ms behind` : ''}`,
      );
      // The replica takes over after the node timeout: poll until the slot has a live master again.
      const promoted = await until(
        async () => (await masterServing(s, slot).catch(() => victim)) !== victim,
        60_000,
        200,
      );
      const failoverSeconds = Math.round((Date.now() - killedAt) / 100) / 10;
      const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: size(ctx, 120_000, 600_000) });
      const a = await s.audit();
      const lostAcks = a.status?.jobs.lostAcks ?? 0;
      const row = s.row(a, {
        jobs,
        joinedAt,
        faults: lagMs > 0 ? `replica frozen ${lagMs / 1000} s, master SIGKILL` : '1 master SIGKILL',
        checks: [...checks, [promoted, `replica promoted after ${failoverSeconds} s`]],
        notes: [
          `replica promoted in ${failoverSeconds} s`,
          `run figures: lostAcks ${lostAcks}, removed ${a.status?.jobs.removed ?? 0}, forgotten by the run ${a.forgottenByRun}`,
        ],
      });
      // Asynchronous replication may lose the master's last writes: reported, and passing only when
      // the run joined once and shows every lost job in its own figures.
      row.pass =
        checks.every(([ok]) => ok) &&
        promoted &&
        joinedAt !== null &&
        a.joins === 1 &&
        a.lost.length <= lostAcks;
      row.verdict = 'report';
      return row;
    } finally {
      await s.close();
    }
  };
}

function nodeOnPort(s: Session, port: number) {
  const node = s.cluster?.nodes.find((n) => n.port === port);
  if (!node) throw new Error(`no cluster node on port ${port}`);
  return node;
}

/** The port of a replica of the master on `port`, from CLUSTER NODES. */
async function replicaOf(s: Session, port: number): Promise<number> {
  const lines = String(await (s.client as Cluster).cluster('NODES')).split('\n');
  const masterId = lines.find((l) => l.includes(`:${port}@`))?.split(' ')[0];
  const replica = lines.find((l) => masterId && l.split(' ')[3] === masterId);
  const m = replica && /:(\d+)@/.exec(replica);
  if (!m) throw new Error(`no replica of the master on port ${port}`);
  return Number(m[1]);
}

/** The port of the master serving a slot, from the cluster's own slot table. */
export async function masterServing(s: Session, slot: number): Promise<number> {
  const table = await (s.client as Cluster).cluster('SLOTS');
  const master = table.find(([low, high]) => slot >= low && slot <= high)?.[2];
  if (!master) throw new Error(`no master serves slot ${slot}`);
  return master[1];
}
