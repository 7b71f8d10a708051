// Runs `mailproxy doctor`: every DNS record the appliance depends on, for hostname, the public IPs and
// every domain, through the chosen resolver. Probes (probes.ts) gather, judges (checks.ts) decide.
import type { Config } from '../config/schema';
import type { DnsClient } from '../selftest/dns';
import { findingsReport, timedCheck, type CheckLine, type FindingsReport } from '../report/findings';
import { judgeAddresses, judgeDmarc, judgeMx, judgePtr, judgeSpfIp, judgeSpfLookups, judgeSpfRecord, MXTOOLBOX } from './checks';
import { DEFAULT_DNSBL_ZONES, judgeDnsbl, type DnsblZone } from './dnsbl-checks';
import { judgeMtaSts, judgeTlsRpt } from './mta-sts-checks';
import { probeDmarc, probeDnsbl, probeMtaSts, probeSpf } from './probes';
import { hostedPolicy } from '../mtasts-host/policy';

export interface DoctorOptions {
  dns: DnsClient;
  /** The DNSBL zones to look the public IPv4 up in; DEFAULT_DNSBL_ZONES when absent. */
  dnsbl?: DnsblZone[];
  /** Extra trusted CA certificates (PEM) for the MTA-STS policy hosts (a test CA). */
  extraCa?: string[];
  now?: () => Date;
}

export async function runDoctor(config: Config, options: DoctorOptions): Promise<FindingsReport> {
  const { dns } = options;
  const now = options.now ?? (() => new Date());
  const ips = [config.public_ipv4, ...(config.public_ipv6 ? [config.public_ipv6] : [])];
  const hostChecks: Promise<CheckLine>[] = [
    timedCheck(`address@${config.hostname}`, MXTOOLBOX.address, async () => {
      const [a, aaaa] = await Promise.all([dns.a(config.hostname), dns.aaaa(config.hostname)]);
      return judgeAddresses(config, a, aaaa);
    }),
    ...ips.map((ip) => timedCheck(`ptr@${ip}`, MXTOOLBOX.ptr, async () => judgePtr(ip, await dns.ptr(ip), config.hostname))),
  ];
  // With policy hosting on, the policy and the TLS-RPT address the appliance publishes are known.
  const hosted = config.inbound.mta_sts.enabled ? hostedPolicy(config) : null;
  const hostedRua = hosted && config.inbound.mta_sts.tls_rpt_rua ? config.inbound.mta_sts.tls_rpt_rua : null;
  const domainChecks = config.domains.map(async (domain): Promise<CheckLine[]> => {
    const mx = dns.mx(domain);
    const spf = probeSpf(dns, domain, ips, config.hostname);
    return Promise.all([
      timedCheck(`mx@${domain}`, MXTOOLBOX.mx, async () => judgeMx(domain, await mx, config.hostname)),
      timedCheck(`spf@${domain}`, MXTOOLBOX.spf, async () => judgeSpfRecord(await spf, config)),
      timedCheck(`spf.lookups@${domain}`, MXTOOLBOX.spfLookups, async () => judgeSpfLookups(await spf, config)),
      timedCheck(`spf.ip@${domain}`, MXTOOLBOX.spfIp, async () => judgeSpfIp(await spf, config)),
      timedCheck(`dmarc@${domain}`, MXTOOLBOX.dmarc, async () => judgeDmarc(await probeDmarc(dns, domain))),
      timedCheck(`mta-sts@${domain}`, MXTOOLBOX.mtaSts, async () =>
        judgeMtaSts(await probeMtaSts(dns, domain, await mx, { port: config.outbound.mta_sts_port, ca: options.extraCa ?? [] }), config.hostname, hosted),
      ),
      timedCheck(`tls-rpt@${domain}`, MXTOOLBOX.tlsRpt, async () => judgeTlsRpt(domain, await dns.txt(`_smtp._tls.${domain}`), hostedRua)),
    ]);
  });
  // DNSBLs list IPv4 addresses; the usual ones have no IPv6 zone worth asking.
  const blacklist = (options.dnsbl ?? DEFAULT_DNSBL_ZONES).map((zone) =>
    timedCheck(`dnsbl@${zone.zone}`, MXTOOLBOX.blacklist, async () => judgeDnsbl(await probeDnsbl(dns, config.public_ipv4, zone))),
  );
  const lines = [...(await Promise.all(hostChecks)), ...(await Promise.all(domainChecks)).flat(), ...(await Promise.all(blacklist))];
  return findingsReport('doctor', lines, now());
}
