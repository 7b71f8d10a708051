// The DNS records a correct setup publishes for a config (README "DNS you must set", with DMARC and TLS-RPT),
// as a zone for the loopback DNS server: the demo's resolver answers them, so `mailproxy doctor` and
// `mailproxy selftest` judge the demo as they judge a VPS whose DNS is done. Pure.
import { reverseName } from '../selftest/dns';
import type { Config } from '../config/schema';
import type { Zone } from '../testpeers/dns-server';

/** MX of each domain → hostname, hostname A/AAAA → the public IPs, their PTR → hostname, SPF, DMARC, TLS-RPT. */
export function publishedZone(config: Config): Zone {
  const ips = [config.public_ipv4, ...(config.public_ipv6 ? [config.public_ipv6] : [])];
  const spf = `v=spf1 ${ips.map((ip) => `${ip.includes(':') ? 'ip6' : 'ip4'}:${ip}`).join(' ')} -all`;
  const zone: Required<Pick<Zone, 'MX' | 'A' | 'AAAA' | 'PTR' | 'TXT'>> = {
    MX: {},
    A: { [config.hostname]: [config.public_ipv4] },
    AAAA: config.public_ipv6 ? { [config.hostname]: [config.public_ipv6] } : {},
    PTR: Object.fromEntries(ips.map((ip) => [reverseName(ip), [config.hostname]])),
    TXT: {},
  };
  for (const domain of config.domains) {
    zone.MX[domain] = [{ exchange: config.hostname, preference: 10 }];
    zone.TXT[domain] = [spf];
    zone.TXT[`_dmarc.${domain}`] = [`v=DMARC1; p=reject; rua=mailto:postmaster@${domain}`];
    zone.TXT[`_smtp._tls.${domain}`] = [`v=TLSRPTv1; rua=mailto:postmaster@${domain}`];
  }
  return zone;
}
