// `mailproxy selftest`: the CLI edge of the SMTP self-test. Exit codes are health's (Nagios): 0 OK,
// 1 WARNING, 2 CRITICAL, 3 UNKNOWN, also for a usage error, a config that does not load, or no resolver to
// ask but the system's. `mailproxy doctor` shares the edge (prepareCheckCommand).
import { readFileSync } from 'node:fs';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadConfigFile, resolveConfigPath } from '../command/config-file';
import type { Command, CommandIo } from '../command/io';
import { UsageError } from '../command/usage';
import { parseTargetHostPort, type TargetHostPort } from '../config/net';
import type { Config } from '../config/schema';
import { STATUS_CODE } from '../report/status';
import { chooseResolver, makeDnsClient, type DnsClient } from './dns';
import { formatFindings, formatFindingsJson, type FindingsReport } from '../report/findings';
import { runSelftest } from './run';

export interface PreparedCheck {
  config: Config;
  dns: DnsClient;
  json: boolean;
  extraCa: string[];
  values: Record<string, string | boolean | string[] | undefined>;
}

const UNKNOWN = STATUS_CODE.UNKNOWN;

/**
 * What selftest and doctor share before checking: arguments, the config, the CA files, the resolver. A
 * number is the exit code of a run that stops here (UNKNOWN, with the reason on stderr); a usage error is
 * thrown (src/cli.ts prints it with the usage and exits UNKNOWN).
 */
export function prepareCheckCommand(command: 'selftest' | 'doctor', argv: string[], io: CommandIo, extraOptions: ParseArgsConfig['options'] = {}): PreparedCheck | number {
  const parsed = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      resolver: { type: 'string' },
      ca: { type: 'string', multiple: true },
      json: { type: 'boolean', default: false },
      ...extraOptions,
    },
  });
  if (parsed.positionals.length) throw new UsageError(`unexpected argument: ${parsed.positionals[0]}`);
  const values: PreparedCheck['values'] = parsed.values;
  const say = (text: string) => {
    io.stderr.write(`mailproxy ${command} UNKNOWN: ${text}\n`);
    return UNKNOWN;
  };
  let loaded: ReturnType<typeof loadConfigFile>;
  try {
    loaded = loadConfigFile(values.config as string | undefined, io.stderr);
  } catch (err) {
    return say((err as Error).message);
  }
  if (!loaded) return say(`${resolveConfigPath(values.config as string | undefined).file} is not a valid config (above); nothing was checked`);
  const extraCa: string[] = [];
  for (const file of (values.ca as string[] | undefined) ?? []) {
    try {
      extraCa.push(readFileSync(file, 'utf8'));
    } catch (err) {
      return say(`cannot read --ca ${file}: ${(err as Error).message}`);
    }
  }
  const resolver = chooseResolver(values.resolver as string | undefined, loaded.config);
  if ('error' in resolver) return say(resolver.error);
  return { config: loaded.config, dns: makeDnsClient(resolver.servers), json: values.json === true, extraCa, values };
}

export function printReport(report: FindingsReport, json: boolean, io: CommandIo): number {
  io.stdout.write(json ? formatFindingsJson(report) : formatFindings(report));
  return STATUS_CODE[report.status];
}

async function runSelftestCommand(argv: string[], io: CommandIo): Promise<number> {
  const prepared = prepareCheckCommand('selftest', argv, io, { target: { type: 'string' } });
  if (typeof prepared === 'number') return prepared;
  let target: TargetHostPort | undefined;
  const text = prepared.values.target as string | undefined;
  if (text !== undefined) {
    const parsed = parseTargetHostPort(text, 25);
    if (!parsed) throw new UsageError(`--target ${JSON.stringify(text)}: expected HOST[:PORT], IP[:PORT] or [IPv6]:PORT`);
    target = parsed;
  }
  const report = await runSelftest(prepared.config, { dns: prepared.dns, extraCa: prepared.extraCa, ...(target ? { target } : {}) });
  return printReport(report, prepared.json, io);
}

export const command: Command = {
  name: 'selftest',
  usage: [
    {
      synopsis: 'selftest [--config FILE] [--target HOST[:PORT]] [--resolver IP[:PORT]] [--ca FILE] [--json]',
      about: [
        "MXToolbox's SMTP test against haraka-in under its check names (banner,",
        'reverse DNS, valid hostname, TLS, open relay, connection and transaction',
        'time cold and warm) and haraka-out refusing to relay from here; exit',
        'codes as health; never asks the system resolver',
      ],
    },
  ],
  details: `  MXToolbox's SMTP test against haraka-in, under its check names: Banner Check, Reverse DNS Mismatch,
  Valid Hostname, TLS, Open Relay, Connection Time and Transaction Time (cold and warm); and haraka-out
  refusing to relay from this host. Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the worst check wins)
  --target HOST[:PORT]   test this address or host name (resolved through the resolver; port 25 by default)
                         instead of haraka-in's listen addresses
  --resolver IP[:PORT]   the DNS server to ask (default: the config's dns.servers; never the system resolver)
  --ca FILE              also trust this CA certificate (PEM) when verifying the chain (a staging or test CA)
  --json                 the report as JSON
`,
  exitStyle: 'nagios',
  run: runSelftestCommand,
};
