// The drain's decisions (pure): when to deliver, how long to wait after a temporary failure (Postfix's
// queue-time backoff), when a message expires, and when a refused message may go back to its sender.
import { describe, expect, it } from 'vitest';
import { afterReply, bounceOrHold, DRAIN_DEFAULTS, drainStep, nextAttemptAt } from '../../src/plugins/store-forward/drain-plan';

const T0 = Date.UTC(2026, 0, 1);
const MIN = 60_000;
const DAY = 24 * 60 * MIN;
const S = DRAIN_DEFAULTS;

describe('drainStep', () => {
  it('delivers a new message at once, waits for its next attempt time, expires it after max_age', () => {
    expect(drainStep({ receivedAt: T0, nextAttemptAt: null }, T0, S)).toEqual({ action: 'deliver' });
    expect(drainStep({ receivedAt: T0, nextAttemptAt: T0 + 5 * MIN }, T0 + MIN, S)).toEqual({ action: 'wait', until: T0 + 5 * MIN });
    expect(drainStep({ receivedAt: T0, nextAttemptAt: T0 + 5 * MIN }, T0 + 5 * MIN, S)).toEqual({ action: 'deliver' });
    expect(drainStep({ receivedAt: T0, nextAttemptAt: null }, T0 + 5 * DAY, S)).toEqual({ action: 'deliver' });
    expect(drainStep({ receivedAt: T0, nextAttemptAt: null }, T0 + 5 * DAY + 1, S)).toEqual({ action: 'expired' });
    expect(drainStep({ receivedAt: T0, nextAttemptAt: T0 + 6 * DAY }, T0 + 5 * DAY + 1, S)).toEqual({ action: 'expired' });
  });
});

describe('afterReply', () => {
  it('2xx removes, 5xx is refused, 4xx retries after the time queued (5 min to 4000 s)', () => {
    const meta = { receivedAt: T0 };
    expect(afterReply(meta, 250, T0 + MIN, S)).toEqual({ action: 'remove' });
    expect(afterReply(meta, 550, T0 + MIN, S)).toEqual({ action: 'refused' });
    expect(afterReply(meta, 554, T0 + 6 * DAY, S)).toEqual({ action: 'refused' });
    expect(afterReply(meta, 451, T0 + MIN, S)).toEqual({ action: 'retry', nextAttemptAt: T0 + MIN + 5 * MIN });
    expect(afterReply(meta, 451, T0 + 20 * MIN, S)).toEqual({ action: 'retry', nextAttemptAt: T0 + 40 * MIN });
    expect(afterReply(meta, 452, T0 + DAY, S)).toEqual({ action: 'retry', nextAttemptAt: T0 + DAY + 4_000_000 });
    expect(afterReply(meta, 421, T0 + 5 * DAY + 1, S)).toEqual({ action: 'expired' });
    // Not a final reply the backend should give: treated as temporary, never as delivered or refused.
    expect(afterReply(meta, 354, T0 + MIN, S)).toMatchObject({ action: 'retry' });
    expect(afterReply(meta, 0, T0 + MIN, S)).toMatchObject({ action: 'retry' });
  });

  it('nextAttemptAt never goes below the minimum, even for a clock that went back', () => {
    expect(nextAttemptAt({ receivedAt: T0 }, T0 - MIN, S)).toBe(T0 - MIN + 5 * MIN);
  });
});

describe('bounceOrHold', () => {
  it.each([
    ['sender@example.com', 'pass', 'bounce'],
    ['<sender@example.com>', 'pass', 'bounce'],
    ['sender@example.com', 'softfail', 'hold'],
    ['sender@example.com', 'fail', 'hold'],
    ['sender@example.com', 'neutral', 'hold'],
    ['sender@example.com', 'none', 'hold'],
    ['sender@example.com', 'temperror', 'hold'],
    ['sender@example.com', 'permerror', 'hold'],
    ['sender@example.com', null, 'hold'],
    ['', 'pass', 'hold'],
    ['<>', 'pass', 'hold'],
    ['postmaster', 'pass', 'hold'],
  ] as const)('%j with SPF %s → %s', (mailFrom, spf, expected) => {
    expect(bounceOrHold(mailFrom, spf)).toBe(expected);
  });
});
