/** Where Redis is: one server (a plain URL), or a Redis Cluster reached through some of its nodes. */
export type RedisTarget =
  | { kind: 'single'; url: string }
  | {
      kind: 'cluster';
      nodes: { host: string; port: number }[];
      username: string | undefined;
      password: string | undefined;
      tls: boolean;
    };

const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]+)\/?$/;

/**
 * Reads `redis://…`, `rediss://…`, or `redis+cluster://[user:password@]host:port,host:port` (and
 * `rediss+cluster://` for TLS). Null when the text is none of them.
 */
export function parseRedisTarget(text: string): RedisTarget | null {
  const cluster = CLUSTER_URL.exec(text);
  if (cluster) {
    const nodes = cluster[4]!.split(',').map((hp) => {
      const m = /^([^:,\s]+):(\d{1,5})$/.exec(hp.trim());
      return m ? { host: m[1]!, port: Number(m[2]) } : null;
    });
    if (nodes.length === 0 || nodes.some((n) => n === null || n.port < 1 || n.port > 65_535)) return null;
    const decode = (v: string | undefined) => (v ? decodeURIComponent(v) : undefined);
    return {
      kind: 'cluster',
      nodes: nodes as { host: string; port: number }[],
      username: decode(cluster[2]),
      password: decode(cluster[3]),
      tls: cluster[1] === 'rediss',
    };
  }
  try {
    const u = new URL(text);
    return u.protocol === 'redis:' || u.protocol === 'rediss:' ? { kind: 'single', url: text } : null;
  } catch {
    return null;
  }
}

/** The URL with any password masked, for logs, errors and status output. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^/:@]*:)[^@/]*@/, '$1***@');
}
