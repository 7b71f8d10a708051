import { describe, expect, it } from 'vitest';
import { enhancedStatusFor, withEnhancedStatus } from '../../src/plugins/smtp/enhanced';

describe('enhanced status codes on Haraka’s own refusals', () => {
  it('classifies Haraka’s wordings', () => {
    expect(enhancedStatusFor(550, 'I cannot deliver mail for <x@y.example>')).toBe('5.7.1');
    expect(enhancedStatusFor(421, 'timeout')).toBe('4.4.2');
    expect(enhancedStatusFor(421, 'Come back later')).toBe('4.3.2');
    expect(enhancedStatusFor(500, 'Unrecognized command')).toBe('5.5.2');
    expect(enhancedStatusFor(503, 'MAIL required first')).toBe('5.5.1');
    expect(enhancedStatusFor(451, 'Bare line-feed; see https://haraka.github.io/barelf/')).toBe('4.6.0');
    expect(enhancedStatusFor(452, 'Internal Server Error')).toBe('4.0.0');
  });

  it('keeps a code that is there, and leaves successes alone', () => {
    expect(enhancedStatusFor(550, '5.1.1 <x@y.example>: Recipient address rejected')).toBeNull();
    expect(enhancedStatusFor(250, 'OK')).toBeNull();
    expect(withEnhancedStatus(250, 'OK')).toBe('OK');
  });

  it('rewrites only the first line of a string or list, and passes DSN objects through', () => {
    expect(withEnhancedStatus(550, 'I cannot deliver mail for <a@b.example>')).toEqual(['5.7.1 I cannot deliver mail for <a@b.example>']);
    expect(withEnhancedStatus(501, ['Command parsing failed', 'bad address'])).toEqual(['5.5.4 Command parsing failed', 'bad address']);
    const dsn = { code: 550, reply: '5.1.1 unknown' };
    expect(withEnhancedStatus(550, dsn)).toBe(dsn);
  });
});
