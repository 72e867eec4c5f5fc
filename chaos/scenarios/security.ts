import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { roleCommand } from '../../shared/roles.js';
import type { ChaosProcess } from '../processes.js';
import { Session, type Check, type Row, type ScenarioContext } from '../session.js';
import { finishRun } from './common.js';

const PASSWORD = 'chaos-Secret-4711';
const WRONG_PASSWORD = 'wrong-Secret-0815';

/** A throwaway CA, a server certificate it signed for 127.0.0.1, and an unrelated CA (the wrong one). */
function makeCertificates(dir: string): void {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const selfSignedCa = (name: string, subject: string) =>
    ssl(
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      subject,
    );
  selfSignedCa('ca', '/CN=conveyor chaos CA');
  ssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
    '-subj',
    '/CN=127.0.0.1',
  );
  writeFileSync(join(dir, 'san.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  ssl(
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'san.cnf',
  );
  selfSignedCa('other', '/CN=some other CA');
}

/** Output lines that contain a secret, from every process the scenario started. */
function leaks(procs: readonly ChaosProcess[], secrets: readonly string[]): string[] {
  return procs.flatMap((p) =>
    p
      .output()
      .split('\n')
      .filter((l) => secrets.some((s) => l.includes(s)))
      .map((l) => `${p.label}: ${l.slice(0, 120)}`),
  );
}

/** `npm run status` (text and --json) against the run, at debug level, so its output can be grepped too. */
function statusProcesses(s: Session): ChaosProcess[] {
  const { command, args } = roleCommand('producer', false);
  const script = args[args.length - 1]!.replace(/producers[\\/]main\.ts$/, 'scripts/status/main.ts');
  const env = s.env({ LOG_LEVEL: 'debug' });
  return [
    s.procs.spawn('status', 'script', command, [...args.slice(0, -1), script], env),
    s.procs.spawn('status-json', 'script', command, [...args.slice(0, -1), script, '--json'], env),
  ];
}

/** S1. `rediss://` with a password and REDIS_TLS_CA: a run works; a wrong CA or password ends start-up with a clear error. */
export async function tlsAndAuth(ctx: ScenarioContext): Promise<Row> {
  const s = await Session.open(ctx, 'S1 TLS + password', {
    redisArgs: (dir, port) => {
      makeCertificates(dir);
      return [
        '--port',
        '0',
        '--tls-port',
        String(port),
        '--tls-cert-file',
        join(dir, 'server.pem'),
        '--tls-key-file',
        join(dir, 'server.key'),
        '--tls-ca-cert-file',
        join(dir, 'ca.pem'),
        '--tls-auth-clients',
        'no',
        '--requirepass',
        PASSWORD,
      ];
    },
    url: (plain) => plain.replace('redis://', `rediss://:${PASSWORD}@`),
    tlsCa: (dir) => join(dir, 'ca.pem'),
  });
  try {
    const jobs = 50;
    const env = { PRODUCERS: 1, JOBS: jobs };
    s.consumer({ ...env, LOG_LEVEL: 'debug' });
    s.producer(env);
    const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: 60_000 });
    await Promise.all(statusProcesses(s).map((p) => p.exit));
    const statusOk = s.procs.all
      .filter((p) => p.label.startsWith('status'))
      .every(
        (p) =>
          p.exited?.code === 0 &&
          p.output().includes('"runId":"run"') !== p.output().includes('run run on queue chaos'),
      );
    // Refusals: each must exit non-zero by itself, with a message that says what to fix.
    const wrongCa = s.procs.spawnRole(
      'consumer',
      'wrong-ca',
      s.env({ REDIS_TLS_CA: join(s.dir, 'other.pem'), CONSUMER_ID: 'wrong-ca' }),
    );
    const wrongPw = s.procs.spawnRole(
      'producer',
      'wrong-password',
      s.env({ REDIS_URL: s.redisUrl.replace(PASSWORD, WRONG_PASSWORD), PRODUCER_ID: 'x', PRODUCERS: 1 }),
    );
    const noPw = s.procs.spawnRole(
      'consumer',
      'no-password',
      s.env({ REDIS_URL: s.redisUrl.replace(`:${PASSWORD}@`, ''), CONSUMER_ID: 'nopw' }),
    );
    const refusals = [
      { p: wrongCa, text: 'set REDIS_TLS_CA' },
      { p: wrongPw, text: 'refused the credentials' },
      { p: noPw, text: 'refused the credentials' },
    ];
    const stragglers = await s.procs.settle(30_000);
    const refusalChecks: Check[] = refusals.map(({ p, text }) => [
      p.exited !== null && p.exited.code !== 0 && !stragglers.includes(p.label) && p.output().includes(text),
      `${p.label}: ${stragglers.includes(p.label) ? 'still retrying after 30 s' : `exit ${p.exited?.code}`}${p.output().includes(text) ? '' : `, no "${text}"`}`,
    ]);
    const leaked = leaks(s.procs.all, [PASSWORD, WRONG_PASSWORD]);
    const a = await s.audit();
    return s.row(a, {
      jobs,
      joinedAt,
      faults: 'wrong CA, wrong/no password',
      checks: [
        ...checks.slice(0, 1),
        ...refusalChecks,
        [leaked.length === 0, `secret in output: ${leaked.slice(0, 2).join(' | ')}`],
        [statusOk, 'status failed over TLS'],
      ],
      notes: [
        `run over rediss:// + password; refusals exit ${refusals.map(({ p }) => p.exited?.code ?? 'none').join('/')}; 0 secrets in ${s.procs.all.length} processes' output`,
      ],
    });
  } finally {
    await s.close();
  }
}

/**
 * The ACL of docs/security.md: keys and pub/sub channels under the queue's hash tag only, data
 * commands, scripting, and nothing administrative. Kept here so the doc and the test agree.
 */
export function conveyorAcl(queue: string, user: string, password: string): string[] {
  return [
    'ACL',
    'SETUSER',
    user,
    'reset',
    'on',
    `>${password}`,
    ...aclKeyPatterns(queue),
    `&{${queue}}:*`,
    ...ACL_RULES,
  ];
}

/**
 * The key patterns of a queue: its hash tag, and its shards' tags (`{<queue>#<i>.<salt>}`). Every
 * run-protocol script names each key it touches in KEYS, so these patterns are all a user needs.
 */
export function aclKeyPatterns(queue: string): string[] {
  return [`~{${queue}}:*`, `~{${queue}#*`];
}

export const ACL_RULES = [
  '-@all',
  // connecting: HELLO/AUTH, naming the connection, BullMQ's version and eviction-policy check (INFO)
  '+hello',
  '+auth',
  '+ping',
  '+quit',
  '+select',
  '+client|setname',
  '+info',
  // BullMQ's scripts and the run protocol's, and the commands inside them (scripts are checked too)
  '+evalsha',
  '+eval',
  '+script|load',
  '+time',
  '+@read',
  '+@write',
  '+@transaction',
  '+bzpopmin',
  // the run's events channel (joined, cancel)
  '+@pubsub',
  // nothing that reaches beyond the queue's keys or changes the server
  '-keys',
  '-scan',
  '-flushall',
  '-flushdb',
  '-config',
  '-debug',
  '-shutdown',
  '-migrate',
  '-restore',
  '-sort',
  '-sort_ro',
];

/** S2. A Redis user limited to conveyor's ACL runs a whole job run; nothing is denied. */
export async function aclUser(ctx: ScenarioContext): Promise<Row> {
  const user = 'conveyor';
  const s = await Session.open(ctx, 'S2 restricted ACL user', {
    redisArgs: ['--requirepass', PASSWORD],
    url: (plain) => plain.replace('redis://', `redis://:${PASSWORD}@`),
  });
  try {
    await s.client.call(...(conveyorAcl(s.queue, user, PASSWORD) as [string, ...string[]]));
    await s.client.call('ACL', 'LOG', 'RESET');
    const url = s.redisUrl.replace(`redis://:${PASSWORD}@`, `redis://${user}:${PASSWORD}@`);
    const jobs = 100;
    const env = { PRODUCERS: 1, JOBS: jobs, REDIS_URL: url };
    s.consumer(env);
    s.consumer(env);
    s.producer(env);
    const { joinedAt, checks } = await finishRun(s, { joinTimeoutMs: 60_000 });
    const denied = ((await s.client.call('ACL', 'LOG')) as unknown[][]).map((entry) => {
      const rec: Record<string, unknown> = {};
      for (let i = 0; i + 1 < entry.length; i += 2) rec[String(entry[i])] = entry[i + 1];
      return `${String(rec.reason)}:${String(rec.object)}`;
    });
    const forbidden = String(
      await s.client.call('ACL', 'DRYRUN', user, 'FLUSHALL').catch((e: Error) => e.message),
    );
    const otherKeys = String(
      await s.client.call('ACL', 'DRYRUN', user, 'GET', 'not-conveyor').catch((e: Error) => e.message),
    );
    const a = await s.audit();
    return s.row(a, {
      jobs,
      joinedAt,
      faults: 'restricted user',
      checks: [
        ...checks,
        [denied.length === 0, `ACL denied: ${[...new Set(denied)].join(', ')}`],
        [!forbidden.startsWith('OK'), 'the user may FLUSHALL'],
        [!otherKeys.startsWith('OK'), 'the user may read keys outside its queue'],
      ],
      notes: [`ACL log empty: ${denied.length === 0}; FLUSHALL and foreign keys refused`],
    });
  } finally {
    await s.close();
  }
}
