// The demo's backend stand-in answers recipients as a real backend does, and its DNS server publishes the
// records `mailproxy doctor` asks for: the demo is judged by the tools as a finished VPS is.
import { describe, expect, it } from 'vitest';
import { loadConfigText } from '../../src/config/load';
import type { Config } from '../../src/config/schema';
import { backendRecipientRefusal } from '../../src/demo/mailboxes';
import { publishedZone } from '../../src/demo/zone';
import { MXTOOLBOX_PROBE, relayTricks } from '../../src/relay-tricks';

function config(extra = ''): Config {
  const loaded = loadConfigText(`version: 1\nhostname: mx.demo.test\npublic_ipv4: 192.0.2.25\ndomains: [demo.test, other.test]\n${extra}`);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.errors));
  return loaded.config;
}

describe('the backend stand-in of the demo', () => {
  const refusal = (address: string) => backendRecipientRefusal(address, ['demo.test']);

  it('accepts its mailboxes at our domains, in any case and quoted', () => {
    for (const address of ['alice@demo.test', 'BOB@Demo.Test', 'postmaster@demo.test', '"alice"@demo.test', 'alice@demo.test.']) expect(refusal(address), address).toBeNull();
  });

  it('refuses an unknown user (550 5.1.1) and every relay trick at our domain, and relaying (554 5.7.1)', () => {
    expect(refusal('carol@demo.test')).toBe('550 5.1.1 <carol@demo.test>: Recipient address rejected: User unknown in virtual mailbox table');
    expect(refusal('bob@example.net')).toBe('554 5.7.1 <bob@example.net>: Relay access denied');
    const tricks = relayTricks({ foreign: MXTOOLBOX_PROBE.domain, own: 'demo.test', ownHost: 'mx.demo.test', ipv4: '192.0.2.1', ipv6: '2001:db8::1' });
    for (const trick of tricks.filter((t) => t.target === 'foreign')) expect(refusal(trick.rcpt), `${trick.name}: ${trick.rcpt}`).toMatch(/^55[04] 5\.[17]\.1 /);
  });
});

describe('the zone the demo publishes', () => {
  it('holds what doctor checks: MX, A, PTR of the public address, SPF, DMARC and TLS-RPT of every domain', () => {
    expect(publishedZone(config())).toEqual({
      MX: { 'demo.test': [{ exchange: 'mx.demo.test', preference: 10 }], 'other.test': [{ exchange: 'mx.demo.test', preference: 10 }] },
      A: { 'mx.demo.test': ['192.0.2.25'] },
      AAAA: {},
      PTR: { '25.2.0.192.in-addr.arpa': ['mx.demo.test'] },
      TXT: {
        'demo.test': ['v=spf1 ip4:192.0.2.25 -all'],
        '_dmarc.demo.test': ['v=DMARC1; p=reject; rua=mailto:postmaster@demo.test'],
        '_smtp._tls.demo.test': ['v=TLSRPTv1; rua=mailto:postmaster@demo.test'],
        'other.test': ['v=spf1 ip4:192.0.2.25 -all'],
        '_dmarc.other.test': ['v=DMARC1; p=reject; rua=mailto:postmaster@other.test'],
        '_smtp._tls.other.test': ['v=TLSRPTv1; rua=mailto:postmaster@other.test'],
      },
    });
  });

  it('and the AAAA, its PTR and an ip6: term with public_ipv6', () => {
    const zone = publishedZone(config('public_ipv6: 2001:db8::25\n'));
    expect(zone.AAAA).toEqual({ 'mx.demo.test': ['2001:db8::25'] });
    expect(zone.PTR?.['5.2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa']).toEqual(['mx.demo.test']);
    expect(zone.TXT?.['demo.test']).toEqual(['v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 -all']);
  });
});
