// `mailproxy tls-report send`: sends the SMTP TLS reports of the finished days (run.ts); the
// mailproxy-tls-report timer runs it every hour, so a day is reported shortly after it ends and what
// failed is tried again. Exit 1 when a report could not be sent.
import { promises as dnsPromises } from 'node:dns';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../command/config-file';
import type { Command, CommandIo } from '../command/io';
import { UsageError } from '../command/usage';
import { pickupDir, tlsRptDir, tlsRptDkimKeyFile } from '../config/paths';
import type { Config } from '../config/schema';
import { dkimZoneLine, signReportMessage } from '../tlsrpt/dkim';
import { lookupThrough, postReport } from '../tlsrpt/https';
import { reportDkimKey, reportFrom } from './dkim-key';
import { sendReports, type ReportLine, type ReportSettings } from './run';

/** The config's report settings, each empty one with its default. */
export function reportSettings(config: Config): ReportSettings {
  const { tls_rpt: rpt } = config.outbound;
  return {
    dir: tlsRptDir(config),
    pickupDir: pickupDir(config),
    submitter: config.hostname,
    organization: rpt.organization || config.hostname,
    contact: rpt.contact || `postmaster@${config.domains[0]}`,
    from: reportFrom(config),
  };
}

/** Signs with the config's key, made (once per run) when there is none yet. */
function reportSigner(config: Config): (message: Buffer) => Promise<Buffer> {
  let key: ReturnType<typeof reportDkimKey> | null = null;
  return async (message) => {
    key ??= reportDkimKey(config);
    return signReportMessage(message, await key);
  };
}

/** `tls-report key`: makes the key when there is none and prints the record to publish. */
async function printDkimRecord(config: Config, io: CommandIo): Promise<number> {
  const key = await reportDkimKey(config);
  io.stdout.write(`${key.created ? 'made a new DKIM key for TLS reports' : 'the DKIM key of TLS reports'} (${tlsRptDkimKeyFile(config)}); publish:\n`);
  io.stdout.write(`  ${dkimZoneLine(key)}\n`);
  return 0;
}

function describe(line: ReportLine): string {
  const to = line.to.length > 0 ? ` to ${line.to.join(', ')}` : '';
  return `${line.day} ${line.domain}: ${line.outcome}${to}${line.note ? ` (${line.note})` : ''}`;
}

async function runTlsReportCommand(args: string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { config: { type: 'string' }, day: { type: 'string' }, ca: { type: 'string' } },
  });
  const [action] = positionals;
  if ((action !== 'send' && action !== 'key') || positionals.length !== 1) throw new UsageError('expected `tls-report send` or `tls-report key`');
  if (values.day !== undefined && !/^\d{4}-\d{2}-\d{2}$/.test(values.day)) throw new UsageError(`--day ${values.day}: expected a date like 2026-12-07`);
  const loaded = loadConfigFile(values.config, io.stderr);
  if (!loaded) return 1;
  const { config } = loaded;
  if (action === 'key') return printDkimRecord(config, io);
  if (!config.outbound.tls_rpt.enabled) {
    io.stdout.write('outbound.tls_rpt.enabled is false: no TLS sessions are counted, nothing to report\n');
    return 0;
  }
  const resolver = new dnsPromises.Resolver({ timeout: 5_000, tries: 2 });
  if (config.dns.servers.length > 0) resolver.setServers(config.dns.servers);
  const ca = values.ca ? readFileSync(values.ca) : undefined;
  const lines = await sendReports(
    reportSettings(config),
    {
      resolveTxt: (name) => resolver.resolveTxt(name),
      post: (url, gzipped) => postReport(url, gzipped, { timeoutMs: 30_000, lookup: lookupThrough(resolver), ...(ca ? { ca } : {}) }),
      sign: reportSigner(config),
      now: Date.now,
    },
    values.day,
  );
  for (const line of lines) io.stdout.write(`${describe(line)}\n`);
  if (lines.length === 0) io.stdout.write('nothing to report\n');
  return lines.some((line) => line.outcome === 'failed') ? 1 : 0;
}

export const command: Command = {
  name: 'tls-report',
  usage: [
    {
      synopsis: 'tls-report key [--config FILE]',
      about: ['make the DKIM key that signs emailed reports (when there is none) and print its record to publish'],
    },
    {
      synopsis: 'tls-report send [--config FILE] [--day YYYY-MM-DD] [--ca FILE]',
      about: [
        'send the SMTP TLS reports (RFC 8460) of the days that have ended, or of --day (today included: its later sessions are not reported again)',
        '--ca trusts one more CA for https: reports (test rigs)',
      ],
    },
  ],
  exitStyle: 'plain',
  run: runTlsReportCommand,
};
