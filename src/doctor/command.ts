// `mailproxy doctor [--config FILE] [--resolver IP[:PORT]] [--dnsbl ZONE[=URL]]... [--ca FILE] [--json]`:
// the CLI edge of the DNS checks. Exit codes are health's (Nagios): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
import { STATUS_CODE } from '../health/status';
import { prepareCheckCommand, printReport, type CheckIo } from '../selftest/command';
import { DEFAULT_DNSBL_ZONES, parseDnsblZone, type DnsblZone } from './checks';
import { runDoctor } from './run';

export const DOCTOR_USAGE = `usage: mailproxy doctor [--config FILE] [--resolver IP[:PORT]] [--dnsbl ZONE[=URL]]... [--ca FILE] [--json]
  the DNS the appliance depends on, for every domain: MX, hostname's A/AAAA, the public IPs' PTR, SPF
  (syntax, at most 10 lookups and 2 void ones, authorizes the public IPs), DMARC, MTA-STS (mx: lines
  match the MX) and TLS-RPT when published, and the Blacklist Check of the public IPv4.
  Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the worst check wins)
  --resolver IP[:PORT]  the DNS server to ask (default: the config's dns.servers; never the system resolver)
  --dnsbl ZONE[=URL]    a DNSBL zone to look the public IPv4 up in, with its delisting page; repeat it; replaces
                        the default list: ${DEFAULT_DNSBL_ZONES.map((zone) => zone.zone).join(', ')}
  --ca FILE             also trust this CA certificate (PEM) for the MTA-STS policy hosts (a test CA)
  --json                the report as JSON
`;

export async function runDoctorCommand(argv: string[], io: CheckIo): Promise<number> {
  const prepared = prepareCheckCommand('doctor', argv, io, DOCTOR_USAGE, { dnsbl: { type: 'string', multiple: true } });
  if (typeof prepared === 'number') return prepared;
  const zones: DnsblZone[] = [];
  for (const text of (prepared.values.dnsbl as string[] | undefined) ?? []) {
    const zone = parseDnsblZone(text);
    if (!zone) {
      io.stderr.write(`mailproxy doctor: --dnsbl ${JSON.stringify(text)}: expected a zone like zen.spamhaus.org, optionally =https://its-delisting-page\n\n${DOCTOR_USAGE}`);
      return STATUS_CODE.UNKNOWN;
    }
    zones.push(zone);
  }
  const report = await runDoctor(prepared.config, { dns: prepared.dns, extraCa: prepared.extraCa, ...(zones.length ? { dnsbl: zones } : {}) });
  return printReport(report, prepared.json, io);
}
