import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** What a session cookie is worth: valid; authentic but over (expired, or logged out); or made up. */
export type SessionCheck = 'ok' | 'over' | 'forged';

const FORMAT = /^(\d{1,15})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;
/** Logged-out sessions remembered at once (each only until it would have expired anyway). */
const MAX_REVOKED = 10_000;

/**
 * The browser's proof of a sign-in with DASHBOARD_TOKEN: `<expiry>.<nonce>.<mac>`, the MAC keyed by
 * the token, so the cookie never holds the token, needs no server state to check (any replica, any
 * restart), and dies with a new token. Logging out revokes its nonce here until it would expire.
 */
export class Sessions {
  private readonly key: Buffer;
  private readonly revoked = new Map<string, number>();

  constructor(
    token: string,
    readonly lifetimeMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.key = createHash('sha256').update('conveyor-session\0').update(token).digest();
  }

  issue(): string {
    const expires = String(this.now() + this.lifetimeMs);
    const nonce = randomBytes(16).toString('base64url');
    return `${expires}.${nonce}.${this.mac(expires, nonce)}`;
  }

  check(value: string): SessionCheck {
    const m = FORMAT.exec(value);
    if (!m) return 'forged';
    const [, expires, nonce, mac] = m as unknown as [string, string, string, string];
    if (!timingSafeEqual(Buffer.from(mac), Buffer.from(this.mac(expires, nonce)))) return 'forged';
    return Number(expires) <= this.now() || this.revoked.has(nonce) ? 'over' : 'ok';
  }

  /** Ends a session (logout): its cookie is refused from now on, here. */
  revoke(value: string): void {
    const m = FORMAT.exec(value);
    if (!m || this.check(value) !== 'ok') return;
    const now = this.now();
    for (const [nonce, expires] of this.revoked) if (expires <= now) this.revoked.delete(nonce);
    if (this.revoked.size >= MAX_REVOKED) this.revoked.delete(this.revoked.keys().next().value!);
    this.revoked.set(m[2]!, Number(m[1]));
  }

  private mac(expires: string, nonce: string): string {
    return createHmac('sha256', this.key).update(`${expires}.${nonce}`).digest('base64url');
  }
}
