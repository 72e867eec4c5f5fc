import { isIP } from 'node:net';

/** Express's `trust proxy`: nobody (false), the nearest N proxies, or proxies at these addresses. */
export type TrustProxy = false | number | string[];

const NAMED = new Set(['loopback', 'linklocal', 'uniquelocal']);

/**
 * Reads DASHBOARD_TRUST_PROXY: unset or `false` (no proxy: the peer is the client), a number of
 * proxies in front (1-10), or comma-separated addresses, subnets (`10.0.0.0/8`) and the names
 * loopback, linklocal, uniquelocal. Returns a sentence saying what is wrong otherwise.
 */
export function parseTrustProxy(text: string): TrustProxy | string {
  const v = text.trim().toLowerCase();
  if (v === '' || v === 'false' || v === '0') return false;
  if (v === 'true')
    return (
      '"true" would trust every address, so any client could set its own (X-Forwarded-For) and slip the ' +
      'sign-in throttle: give the number of proxies in front (usually 1) or their addresses'
    );
  if (/^\d+$/.test(v)) {
    const n = Number(v);
    return n >= 1 && n <= 10 ? n : `"${v}": the number of proxies in front must be 1 to 10`;
  }
  const entries = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const entry of entries) {
    if (NAMED.has(entry)) continue;
    const [address = '', bits, ...more] = entry.split('/');
    const family = isIP(address);
    const max = family === 6 ? 128 : 32;
    const okBits = bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= max);
    if (family === 0 || !okBits || more.length > 0)
      return `"${entry}" is not an address, a subnet (10.0.0.0/8) or one of loopback, linklocal, uniquelocal`;
  }
  return entries;
}
