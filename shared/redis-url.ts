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

/**
 * `redis+cluster://[user[:password]@]host:port,...`. The user information runs to the last `@`, as in
 * any URL (a password may hold `@`); the user name ends at the first `:` (a password may hold `:`).
 */
const CLUSTER_URL = /^(rediss?)\+cluster:\/\/(?:(.*)@)?([^@/?#]+)\/?$/;

/**
 * Reads `redis://…`, `rediss://…`, or `redis+cluster://[user:password@]host:port,host:port` (and
 * `rediss+cluster://` for TLS). Null when the text is none of them.
 */
export function parseRedisTarget(text: string): RedisTarget | null {
  const cluster = CLUSTER_URL.exec(text);
  if (cluster) {
    const nodes = cluster[3]!.split(',').map((hp) => {
      const m = /^([^:,\s]+):(\d{1,5})$/.exec(hp.trim());
      return m ? { host: m[1]!, port: Number(m[2]) } : null;
    });
    if (nodes.length === 0 || nodes.some((n) => n === null || n.port < 1 || n.port > 65_535)) return null;
    const userinfo = cluster[2];
    const colon = userinfo?.indexOf(':') ?? -1;
    const username = userinfo === undefined ? undefined : colon < 0 ? userinfo : userinfo.slice(0, colon);
    const password = userinfo === undefined || colon < 0 ? undefined : userinfo.slice(colon + 1);
    const decode = (v: string | undefined) => (v ? safeDecode(v) : undefined);
    const [user, pass] = [decode(username), decode(password)];
    if (user === null || pass === null) return null;
    return {
      kind: 'cluster',
      nodes: nodes as { host: string; port: number }[],
      username: user,
      password: pass,
      tls: cluster[1] === 'rediss',
    };
  }
  return readRedisUrl(text) ? { kind: 'single', url: text } : null;
}

/** What ioredis takes from a `redis://` or `rediss://` URL (its `parseURL`): credentials, where, options. */
export type RedisUrlParts = {
  url: URL;
  /** From the user information, else from `?username=`/`?password=` (ioredis reads both). */
  username: string | undefined;
  password: string | undefined;
  /** Every query parameter: ioredis takes each as a connection option (`password`, `tls`, `db`...). */
  options: Record<string, string>;
};

/**
 * Reads a `redis://`/`rediss://` URL the way ioredis does: WHATWG URL parsing (the user information
 * runs to the last `@`, the user name to the first `:`), percent-decoded, and every query parameter an
 * option that fills what the user information left unset. Null when ioredis would not read it.
 */
export function readRedisUrl(text: string): RedisUrlParts | null {
  if (!/^rediss?:\/\//i.test(text) || !URL.canParse(text)) return null;
  const url = new URL(text);
  const options: Record<string, string> = {};
  url.searchParams.forEach((value, key) => (options[key] = value));
  let username: string | undefined;
  let password: string | undefined;
  if (url.username || url.password) {
    const [user, pass] = [safeDecode(url.username), safeDecode(url.password)];
    // ioredis would throw on a malformed escape: not a URL it reads.
    if (user === null || pass === null) return null;
    [username, password] = [user, pass];
  }
  return { url, username: username ?? options.username, password: password ?? options.password, options };
}

function safeDecode(v: string): string | null {
  try {
    return decodeURIComponent(v);
  } catch {
    return null;
  }
}

/** Query parameters whose values are shown: plain numbers that say where, never who. */
const SHOWN_OPTIONS = new Set(['db', 'family']);

/**
 * The URL for logs, errors and status output, with every secret masked. Built from the URL as ioredis
 * reads it (never by pattern): a password anywhere (user information or `?password=`) is `***`, every
 * query value but `db` and `family` is `***`, a path other than a database number is `/***`, and a
 * user name without a password (often a password put in the wrong place) is masked too. A text that
 * is not a URL at all is not shown.
 */
export function redactUrl(text: string): string {
  const target = parseRedisTarget(text);
  if (target?.kind === 'cluster') {
    const scheme = target.tls ? 'rediss+cluster' : 'redis+cluster';
    const nodes = target.nodes.map((n) => `${n.host}:${n.port}`).join(',');
    return `${scheme}://${userinfo(target.username, target.password)}${nodes}`;
  }
  // Any URL is shown the same way (a mistyped scheme still hides its password); anything else not at all.
  if (!URL.canParse(text)) return '<not shown: not a URL>';
  const url = new URL(text);
  const user = url.username || url.password ? userinfo(safeDecode(url.username) ?? '', url.password) : '';
  // ioredis reads the path as the database number; anything else is shown masked.
  const path =
    url.pathname && url.pathname !== '/' ? (/^\/\d{1,3}$/.test(url.pathname) ? url.pathname : '/***') : '';
  const query = [...url.searchParams.keys()]
    .map((key) => {
      const value = url.searchParams.get(key) ?? '';
      return `${encodeURIComponent(key)}=${SHOWN_OPTIONS.has(key) && /^\d{1,3}$/.test(value) ? value : '***'}`;
    })
    .join('&');
  return `${url.protocol}//${user}${url.host}${path}${query ? `?${query}` : ''}`;
}

function userinfo(username: string | undefined, password: string | undefined): string {
  if (!username && !password) return '';
  if (!password) return '***@';
  return `${username ? encodeURIComponent(username) : ''}:***@`;
}
