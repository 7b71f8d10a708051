// `mailproxy selftest [--config FILE] [--target HOST[:PORT]] [--resolver IP[:PORT]] [--ca FILE] [--json]`:
// the CLI edge of the SMTP self-test. Exit codes are health's (Nagios): 0 OK, 1 WARNING, 2 CRITICAL,
// 3 UNKNOWN, also for a usage error, a config that does not load, or no resolver to ask but the system's.
// `mailproxy doctor` shares the edge (prepareCheckCommand).
import { readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { loadConfigFile, resolveConfigPath, usageErrorMessage, UsageError } from '../cli-support';
import { parseTargetHostPort, type TargetHostPort } from '../config/net';
import type { Config } from '../config/schema';
import { STATUS_CODE } from '../health/status';
import { chooseResolver, makeDnsClient, type DnsClient } from './dns';
import { formatFindings, formatFindingsJson, type FindingsReport } from './findings';
import { runSelftest } from './run';

export const SELFTEST_USAGE = `usage: mailproxy selftest [--config FILE] [--target HOST[:PORT]] [--resolver IP[:PORT]] [--ca FILE] [--json]
  MXToolbox's SMTP test against haraka-in, under its check names: Banner Check, Reverse DNS Mismatch,
  Valid Hostname, TLS, Open Relay, Connection Time and Transaction Time (cold and warm); and haraka-out
  refusing to relay from this host. Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the worst check wins)
  --target HOST[:PORT]   test this address or host name (resolved through the resolver; port 25 by default)
                         instead of haraka-in's listen addresses
  --resolver IP[:PORT]   the DNS server to ask (default: the config's dns.servers; never the system resolver)
  --ca FILE              also trust this CA certificate (PEM) when verifying the chain (a staging or test CA)
  --json                 the report as JSON
`;

export interface CheckIo {
  stdout: Writable;
  stderr: Writable;
}

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
 * number is the exit code of a run that stops here (UNKNOWN, with the reason on stderr).
 */
export function prepareCheckCommand(
  command: 'selftest' | 'doctor',
  argv: string[],
  io: CheckIo,
  usage: string,
  extraOptions: ParseArgsConfig['options'] = {},
): PreparedCheck | number {
  let values: PreparedCheck['values'];
  try {
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
    values = parsed.values;
  } catch (err) {
    const message = usageErrorMessage(err);
    if (message !== null) {
      io.stderr.write(`mailproxy ${command}: ${message}\n\n${usage}`);
      return UNKNOWN;
    }
    throw err;
  }
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

export function printReport(report: FindingsReport, json: boolean, io: CheckIo): number {
  io.stdout.write(json ? formatFindingsJson(report) : formatFindings(report));
  return STATUS_CODE[report.status];
}

export async function runSelftestCommand(argv: string[], io: CheckIo): Promise<number> {
  const prepared = prepareCheckCommand('selftest', argv, io, SELFTEST_USAGE, { target: { type: 'string' } });
  if (typeof prepared === 'number') return prepared;
  let target: TargetHostPort | undefined;
  const text = prepared.values.target as string | undefined;
  if (text !== undefined) {
    const parsed = parseTargetHostPort(text, 25);
    if (!parsed) {
      io.stderr.write(`mailproxy selftest: --target ${JSON.stringify(text)}: expected HOST[:PORT], IP[:PORT] or [IPv6]:PORT\n\n${SELFTEST_USAGE}`);
      return UNKNOWN;
    }
    target = parsed;
  }
  const report = await runSelftest(prepared.config, { dns: prepared.dns, extraCa: prepared.extraCa, ...(target ? { target } : {}) });
  return printReport(report, prepared.json, io);
}
