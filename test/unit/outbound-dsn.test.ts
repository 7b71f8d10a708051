// What a haraka-out bounce says per recipient (src/plugins/outbound/dsn.ts), from the fields Haraka 3.3.4
// leaves on a recipient in each failure (outbound/hmail.js), including after a restart, when only Haraka's
// own reason survives (the dsn_* fields are not written to the queue file).
import { describe, expect, it } from 'vitest';
import { bounceFields, duration } from '../../src/plugins/outbound/dsn';
import { explainFailure, failures } from '../../src/plugins/outbound/explain';

const base = { domain: 'example.net', ageMs: 5 * 86_400_000 };

describe('bounceFields', () => {
  it('a 5xx at RCPT: the remote reply, its status, and where it came from', () => {
    const rcpt = {
      dsn_action: 'failed',
      dsn_smtp_code: '550',
      dsn_smtp_extc: '5.1.1',
      dsn_status: '5.1.1',
      dsn_smtp_response: 'no such user',
      dsn_remote_mta: '192.0.2.4',
      reason: '550 5.1.1 no such user',
    };
    const fields = bounceFields(rcpt, { ...base, reason: 'Some recipients failed: <a@example.net>', attempts: 3, remote: { name: 'mx.example.net', address: '192.0.2.4' } });
    expect(fields).toEqual({
      reason: 'mx.example.net (192.0.2.4) answered: 550 5.1.1 no such user (a permanent failure, at attempt 3)',
      dsn_action: 'failed',
      dsn_status: '5.1.1',
      dsn_code: undefined,
      dsn_msg: undefined,
      dsn_smtp_code: '550',
      dsn_smtp_extc: '5.1.1',
      dsn_smtp_response: 'no such user',
      dsn_remote_mta: 'dns; mx.example.net',
    });
  });

  it('a reply without an enhanced code still gets a Status (Haraka leaves it out)', () => {
    const rcpt = { dsn_smtp_code: '554', dsn_smtp_response: 'go away', dsn_remote_mta: '192.0.2.4' };
    const fields = bounceFields(rcpt, { ...base, reason: '554 go away', attempts: 1 });
    expect(fields.dsn_status).toBe('5.0.0');
    expect(fields.reason).toBe('192.0.2.4 answered: 554 go away (a permanent failure, at the first attempt)');
    expect(fields.dsn_remote_mta).toBe('dns; [192.0.2.4]');
  });

  it('an expiry after 4xx replies: class 5 now, the last reply quoted', () => {
    const rcpt = { dsn_action: 'failed', dsn_status: '5.2.2', dsn_smtp_code: '452', dsn_smtp_extc: '4.2.2', dsn_smtp_response: 'mailbox full' };
    const fields = bounceFields(rcpt, { ...base, reason: 'Too many failures (Some recipients temp failed: <a@example.net>)', attempts: 22 });
    expect(fields.dsn_status).toBe('5.2.2');
    expect(fields.reason).toBe('the receiving server answered: 452 4.2.2 mailbox full (a temporary failure, given up after 22 attempts over 5 days)');
  });

  it('an expiry where no MX ever answered: X.4.7, no stale diagnostic from an earlier attempt', () => {
    const rcpt = { dsn_code: 550, dsn_msg: 'Tried all MXs example.net', dsn_status: '5.1.2', dsn_smtp_code: '451', dsn_smtp_response: 'try later' };
    const fields = bounceFields(rcpt, { ...base, reason: 'Too many failures (Tried all MXs)', attempts: 22 });
    expect(fields.dsn_status).toBe('5.4.7');
    expect(fields.dsn_smtp_code).toBeUndefined();
    expect(fields.reason).toBe('no mail server of example.net could be reached (a temporary failure, given up after 22 attempts over 5 days)');
  });

  it("an MTA-STS refusal after a restart, known only from Haraka's reason", () => {
    const reason = 'Too many failures (No TLS available but required by configuration.)';
    const explained = explainFailure({}, reason, 'secure.example');
    const fields = bounceFields({}, { ...base, domain: 'secure.example', reason, attempts: 4, explained });
    expect(fields.dsn_status).toBe('5.7.4');
    expect(fields.reason).toBe(
      'MTA-STS policy of secure.example (enforce) requires TLS, but its MX host did not offer STARTTLS (a temporary failure, given up after 4 attempts over 5 days)',
    );
  });

  it('our own deferral reasons: policy MX, unreadable queue file', () => {
    const policy = bounceFields(
      {},
      { ...base, reason: 'Too many failures (Temporary MX lookup error for example.net)', attempts: 2, explained: failures.noPolicyMx('example.net', ['mx.other.net']) },
    );
    expect(policy.dsn_status).toBe('5.7.5');
    expect(policy.reason).toMatch(/^MTA-STS policy of example\.net \(enforce\) names none of its MX hosts \(mx\.other\.net\) \(a temporary failure/);
    const file = bounceFields({}, { ...base, reason: 'Too many failures (x)', attempts: 2, explained: failures.queueFile('/q/f', 'EIO: i/o error') });
    expect(file.dsn_status).toBe('5.3.0');
  });

  it('a recipient Haraka split off another message: no attempt count to tell', () => {
    const fields = bounceFields({ dsn_smtp_code: '550', dsn_smtp_extc: '5.1.1', dsn_smtp_response: 'unknown' }, { ...base, reason: 'Some recipients failed: <b@example.net>' });
    expect(fields.reason).toBe('the receiving server answered: 550 5.1.1 unknown (a permanent failure)');
  });

  it("Haraka's own permanent failures keep their status and words", () => {
    const fields = bounceFields({ dsn_code: 550, dsn_msg: 'No Such Domain: example.net', dsn_status: '5.1.2' }, { ...base, reason: 'No Such Domain: example.net', attempts: 1 });
    expect(fields.dsn_status).toBe('5.1.2');
    expect(fields.reason).toBe('No Such Domain: example.net (a permanent failure, at the first attempt)');
  });
});

describe('explainFailure', () => {
  const handshake = failures.handshake('secure.example', '192.0.2.4');

  it('blames a failed handshake under MTA-STS only when no MX answered at all', () => {
    expect(explainFailure({ tlsFailure: handshake }, 'Tried all MXs', 'secure.example')).toBe(handshake);
    expect(explainFailure({ tlsFailure: handshake }, 'Too many failures (Tried all MXs)', 'secure.example')).toBe(handshake);
    // The next MX answered 4xx: that reply is the reason, as Haraka recorded it.
    expect(explainFailure({ tlsFailure: handshake }, 'Upstream error: 421 4.3.2 busy', 'secure.example')).toBeNull();
  });

  it("puts the plugin's own deferral first, then Haraka's TLS refusals", () => {
    const own = failures.noPolicyMx('secure.example', ['mx.elsewhere.example']);
    expect(explainFailure({ failure: own, tlsFailure: handshake }, 'Temporary MX lookup error for secure.example', 'secure.example')).toBe(own);
    expect(explainFailure({}, 'Host failed TLS verification required by configuration.', 'secure.example')?.status).toBe('4.7.5');
    expect(explainFailure({}, 'Tried all MXs', 'example.net')).toBeNull();
  });
});

describe('duration', () => {
  it('says it in the unit a person would', () => {
    expect(duration(1000)).toBe('1 second');
    expect(duration(6_400)).toBe('6 seconds');
    expect(duration(30 * 60_000)).toBe('30 minutes');
    expect(duration(5 * 3_600_000)).toBe('5 hours');
    expect(duration(432_000_000)).toBe('5 days');
  });
});
