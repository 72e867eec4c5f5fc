import { describe, expect, it } from 'vitest';
import { Sessions } from '../../dashboard/session.js';

describe('dashboard sessions', () => {
  const token = 'tok-0123456789abcdef-secret';

  it('a session holds no trace of the token, checks without server state, and expires', () => {
    let now = 1_000_000;
    const sessions = new Sessions(token, 3_600_000, () => now);
    const value = sessions.issue();
    expect(value).not.toContain(token);
    // Another process with the same token (a replica, a restart) accepts it.
    expect(new Sessions(token, 3_600_000, () => now).check(value)).toBe('ok');
    // A new token ends every session.
    expect(new Sessions(`${token}-rotated`, 3_600_000, () => now).check(value)).toBe('forged');
    now += 3_600_000;
    expect(sessions.check(value)).toBe('over');
  });

  it('made-up or altered cookies are forged; a logout ends one session only', () => {
    const sessions = new Sessions(token, 3_600_000);
    const a = sessions.issue();
    const b = sessions.issue();
    const [expires, nonce, mac] = a.split('.');
    expect(sessions.check(`${Number(expires) + 1}.${nonce}.${mac}`)).toBe('forged');
    expect(sessions.check('guess')).toBe('forged');
    expect(sessions.check(token)).toBe('forged');
    sessions.revoke(a);
    expect(sessions.check(a)).toBe('over');
    expect(sessions.check(b)).toBe('ok');
  });
});
