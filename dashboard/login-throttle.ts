import { isIPv6 } from 'node:net';

export type ThrottleOptions = {
  /** Failures allowed before any wait (typos); the last of them starts the first wait. */
  free: number;
  /** The first wait; each further failure doubles it, up to `maxMs`. */
  baseMs: number;
  maxMs: number;
  /** A client with no failure for this long starts from zero again. */
  forgetMs: number;
  /** Clients remembered at once; the longest quiet is forgotten first (bounded memory under a flood). */
  maxClients: number;
  now?: () => number;
};

export const DEFAULT_THROTTLE: ThrottleOptions = {
  free: 5,
  baseMs: 1_000,
  maxMs: 60_000,
  forgetMs: 15 * 60_000,
  maxClients: 10_000,
};

type Record = { failures: number; lastAt: number; lockedUntil: number };

/**
 * Slows password guessing per client address: from the `free`th failure on, a client must wait before
 * its credentials are checked again (`baseMs`), and each further failure doubles the wait. While it waits nothing is
 * checked, so a guess cannot be confirmed faster than the waits allow. A success clears the count.
 */
export class LoginThrottle {
  private readonly clients = new Map<string, Record>();
  private readonly now: () => number;

  constructor(private readonly opts: ThrottleOptions = DEFAULT_THROTTLE) {
    this.now = opts.now ?? Date.now;
  }

  /** Milliseconds `address` must still wait before its credentials are checked; 0 when it may try. */
  waitMs(address: string): number {
    const r = this.current(clientKey(address));
    return r ? Math.max(0, r.lockedUntil - this.now()) : 0;
  }

  /** Records a failed attempt; returns the failures so far and the wait it now has to sit out. */
  failed(address: string): { failures: number; waitMs: number } {
    const key = clientKey(address);
    const now = this.now();
    const r = this.current(key) ?? { failures: 0, lastAt: now, lockedUntil: 0 };
    r.failures++;
    r.lastAt = now;
    const over = r.failures - this.opts.free;
    const waitMs = over >= 0 ? Math.min(this.opts.baseMs * 2 ** Math.min(over, 30), this.opts.maxMs) : 0;
    r.lockedUntil = now + waitMs;
    // Re-inserted, so the map's order is least recently failed first.
    this.clients.delete(key);
    this.clients.set(key, r);
    if (this.clients.size > this.opts.maxClients) this.clients.delete(this.clients.keys().next().value!);
    return { failures: r.failures, waitMs };
  }

  succeeded(address: string): void {
    this.clients.delete(clientKey(address));
  }

  private current(key: string): Record | undefined {
    const r = this.clients.get(key);
    if (r && this.now() - r.lastAt > this.opts.forgetMs) {
      this.clients.delete(key);
      return undefined;
    }
    return r;
  }
}

/** One IPv6 /64 is one client (a host gets a whole /64 to pick addresses from); an IPv4 address is one. */
function clientKey(address: string): string {
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (v4) return v4[1]!;
  if (!isIPv6(address)) return address;
  const [head = '', tail = ''] = address.split('::');
  const groups = [...head.split(':').filter(Boolean)];
  const rest = tail.split(':').filter(Boolean);
  while (groups.length + rest.length < 8) groups.push('0');
  return [...groups, ...rest].slice(0, 4).join(':').toLowerCase() + '::/64';
}
