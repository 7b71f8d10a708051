// `mailproxy doctor`: the CLI edge of the DNS checks. Exit codes are health's (Nagios): 0 OK, 1 WARNING,
// 2 CRITICAL, 3 UNKNOWN; it shares selftest's edge (prepareCheckCommand).
import type { Command, CommandIo } from '../command/io';
import { UsageError } from '../command/usage';
import { prepareCheckCommand, printReport } from '../selftest/command';
import { DEFAULT_DNSBL_ZONES, parseDnsblZone, type DnsblZone } from './dnsbl-checks';
import { runDoctor } from './run';

async function runDoctorCommand(argv: string[], io: CommandIo): Promise<number> {
  const prepared = prepareCheckCommand('doctor', argv, io, { dnsbl: { type: 'string', multiple: true } });
  if (typeof prepared === 'number') return prepared;
  const zones: DnsblZone[] = [];
  for (const text of (prepared.values.dnsbl as string[] | undefined) ?? []) {
    const zone = parseDnsblZone(text);
    if (!zone) throw new UsageError(`--dnsbl ${JSON.stringify(text)}: expected a zone like zen.spamhaus.org, optionally =https://its-delisting-page`);
    zones.push(zone);
  }
  const report = await runDoctor(prepared.config, { dns: prepared.dns, extraCa: prepared.extraCa, ...(zones.length ? { dnsbl: zones } : {}) });
  return printReport(report, prepared.json, io);
}

export const command: Command = {
  name: 'doctor',
  usage: [
    {
      synopsis: 'doctor [--config FILE] [--resolver IP[:PORT]] [--dnsbl ZONE[=URL]]... [--ca FILE] [--json]',
      about: ['the DNS it depends on: MX, A/AAAA, PTR, SPF (lookup limits, the public', 'IPs), DMARC, MTA-STS, TLS-RPT, blacklists; exit codes as health'],
    },
  ],
  details: `  the DNS the appliance depends on, for every domain: MX, hostname's A/AAAA, the public IPs' PTR, SPF
  (syntax, at most 10 lookups and 2 void ones, authorizes the public IPs), DMARC, MTA-STS (mx: lines
  match the MX; with inbound.mta_sts on: published, the config's policy served, its id in the record) and
  TLS-RPT when published, and the Blacklist Check of the public IPv4.
  Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the worst check wins)
  --resolver IP[:PORT]  the DNS server to ask (default: the config's dns.servers; never the system resolver)
  --dnsbl ZONE[=URL]    a DNSBL zone to look the public IPv4 up in, with its delisting page; repeat it; replaces
                        the default list: ${DEFAULT_DNSBL_ZONES.map((zone) => zone.zone).join(', ')}
  --ca FILE             also trust this CA certificate (PEM) for the MTA-STS policy hosts (a test CA)
  --json                the report as JSON
`,
  exitStyle: 'nagios',
  run: runDoctorCommand,
};
