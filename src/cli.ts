// The `mailproxy` command. Thin: parses arguments and calls modules; returns an exit code (only the bin
// shim calls process.exit).
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { checkConfig } from './check';
import { DEFAULT_CONFIG_PATH, parseCommandArgs, readConfigFile, usageErrorMessage, UsageError } from './cli-support';
import { runDemo } from './demo/run';
import { runRenderCommand } from './render/command';
import { runNotesCommand } from './install/command';
import { sendMessage } from './smtp/send';
import { parseServerOption } from './smtp/server-arg';
import { runQueueCommand } from './queue/command';
import { runCertCommand } from './certs/command';
import { runHealthCommand } from './health/command';
import { runStatsCommand } from './stats/command';
import { runSelftestCommand } from './selftest/command';
import { runDoctorCommand } from './doctor/command';
import { runDaneCommand } from './dane/command';
import { runConfigCommand } from './configure/command';

export interface CliIo {
  stdout: Writable;
  stderr: Writable;
  /** The environment external tools run with (`health` finds systemctl and wg on its PATH); process.env when absent. */
  env?: NodeJS.ProcessEnv;
}

const CONFIG_DEFAULT = `--config FILE defaults to $MAILPROXY_CONFIG, then ${DEFAULT_CONFIG_PATH}.`;

const USAGE = `usage: mailproxy <command> [options]

commands:
  check  --config FILE               validate the config and have Haraka load both rendered instances
  render --config FILE [--out DIR] [--units DIR] [--unbound DIR] [--system] [--root DIR]
                                     write both Haraka instance dirs (default --out: system.instances_dir),
                                     and the systemd units (mailproxy-haraka-in.service, ...) into --units
                                     DIR, or with --system into system.units_dir; the unbound drop-in of
                                     the DANE resolver into --unbound DIR, or with --system into
                                     /etc/unbound/unbound.conf.d; --root prefixes the default dirs (an
                                     installer's throwaway root)
  notes  --config FILE               the DNS records, backend settings and firewall rules the config needs
  send   --server IP:PORT --from ADDR --to ADDR [--to ADDR] [--subject S] [--body TEXT]
         [--local-address IP] [--helo NAME] [--starttls]
                                     send one test message
  cert deploy --config FILE --key K --cert C [--chain CA] [--instances DIR] [--verify-timeout SECONDS]
                                     validate a certificate, install it so Haraka never sees a mismatched
                                     pair, verify it is served over STARTTLS within --verify-timeout
                                     (default 30 s; rollback otherwise)
  cert issue|renew --config FILE [--instances DIR] [--no-deploy] [--force] [--verbose]
                                     native ACME (renew acts only under acme.renew_days left)
  queue list|count --config FILE [--json] [--log FILE]
                                     haraka-out's queue: domain, age, attempts, last error (from --log,
                                     e.g. \`journalctl -u mailproxy-haraka-out -o cat > FILE\`)
  queue flush --config FILE [--instances DIR]
                                     retry every deferred message now (SIGHUP to the running haraka-out)
  queue delete ID --config FILE [--instances DIR] [--force]
                                     remove one message (file name, id or the uuid from its 250 reply)
  health --config FILE [--json] [--prometheus FILE]
                                     both units, banners, STARTTLS and certificate, backend + XCLIENT,
                                     WireGuard handshake, queue, disk; exit 0 OK, 1 WARNING, 2 CRITICAL,
                                     3 UNKNOWN (usage errors too); --prometheus writes a textfile
  selftest [--config FILE] [--target HOST[:PORT]] [--resolver IP[:PORT]] [--ca FILE] [--json]
                                     MXToolbox's SMTP test against haraka-in under its check names (banner,
                                     reverse DNS, valid hostname, TLS, open relay, connection and transaction
                                     time cold and warm) and haraka-out refusing to relay from here; exit
                                     codes as health; never asks the system resolver
  doctor [--config FILE] [--resolver IP[:PORT]] [--dnsbl ZONE[=URL]]... [--ca FILE] [--json]
                                     the DNS it depends on: MX, A/AAAA, PTR, SPF (lookup limits, the public
                                     IPs), DMARC, MTA-STS, TLS-RPT, blacklists; exit codes as health
  dane check DOMAIN [--config FILE | --resolver IP:PORT] [--port 25]
                                     the DANE verdict haraka-out applies to DOMAIN: each MX host and the
                                     TLS it gets (dane, encrypt, opportunistic, skipped); exit 1 when the
                                     lookups fail (mail for it waits)
  dane resolver [--config FILE | --resolver IP:PORT]
                                     whether outbound.dane_resolver validates DNSSEC (the root's AD bit)
  stats [FILE | -] [--since 24h] [--svg FILE] [--json]
                                     haraka-in's edge decisions from its log (FILE, or stdin: \`journalctl
                                     -u mailproxy-haraka-in -o cat | mailproxy stats\`): sessions accepted
                                     and refused by check and reason; --svg draws refusals over time
  demo                               run the whole appliance on loopback (what \`npm start\` does)
  config docs                        print the config reference (docs/CONFIG.md)
  config get KEY... [--config FILE]  each key's value on a line, defaults included (e.g. system.node)
  config set KEY VALUE [--config FILE]
                                     change one key in the file, keeping its comments; refused when the
                                     result would be invalid

${CONFIG_DEFAULT}
\`mailproxy <command> --help\` prints one command's usage, \`mailproxy --version\` the version.
exit codes: 0 ok, 1 failed, 2 usage error; health, selftest, doctor: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios)
`;

/**
 * One command's entries from USAGE (every entry whose first word is the command, with its continuation
 * lines), as `mailproxy <command> --help` prints them; null for a command USAGE does not list.
 */
function commandUsage(command: string): string | null {
  const lines: string[] = [];
  let mine = false;
  for (const line of USAGE.split('\n\ncommands:\n')[1]?.split('\n\n')[0]?.split('\n') ?? []) {
    const entry = /^ {2}(\S+)/.exec(line);
    if (entry) mine = entry[1] === command;
    if (mine) lines.push(entry ? `  mailproxy ${line.slice(2)}` : `${' '.repeat(10)}${line}`);
  }
  if (!lines.length) return null;
  const configNote = lines.some((line) => line.includes('--config')) ? `\n${CONFIG_DEFAULT}\n` : '';
  return `usage:\n${lines.join('\n')}\n${configNote}`;
}

/** `--help` or `-h` anywhere among a command's arguments (before a `--`) asks for its usage instead. */
function asksForHelp(args: string[]): boolean {
  const end = args.indexOf('--');
  return (end === -1 ? args : args.slice(0, end)).some((arg) => arg === '--help' || arg === '-h');
}

/** The version in the package.json next to the code (src/ in a checkout, dist/src/ once built). */
function packageVersion(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
    if (path.dirname(dir) === dir) return 'unknown';
  }
}


async function run(command: string | undefined, args: string[], io: CliIo): Promise<number> {
  const print = (text: string) => io.stdout.write(`${text}\n`);
  switch (command) {
    case 'check': {
      const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
      const { text, source } = readConfigFile(values.config);
      const report = await checkConfig(text, source);
      (report.ok ? io.stdout : io.stderr).write(`${report.lines.join('\n')}\n`);
      return report.ok ? 0 : 1;
    }
    case 'render':
      return runRenderCommand(args, io);
    case 'notes':
      return runNotesCommand(args, io);
    case 'send': {
      const { values } = parseArgs({
        args,
        options: {
          server: { type: 'string' },
          from: { type: 'string' },
          to: { type: 'string', multiple: true },
          subject: { type: 'string', default: 'mailproxy test message' },
          body: { type: 'string', default: 'This is a test message sent by `mailproxy send`.' },
          'local-address': { type: 'string' },
          helo: { type: 'string' },
          starttls: { type: 'boolean', default: false },
        },
      });
      const parsed = parseServerOption(values.server);
      if (!parsed.ok) throw new UsageError(parsed.error);
      const { server } = parsed;
      if (!values.from || !values.to?.length) throw new UsageError('--from and at least one --to are required');
      const result = await sendMessage({
        host: server.host,
        port: server.port,
        from: values.from,
        to: values.to,
        subject: values.subject,
        text: values.body,
        starttls: values.starttls,
        ...(values['local-address'] ? { localAddress: values['local-address'] } : {}),
        ...(values.helo ? { heloName: values.helo } : {}),
      });
      print(`accepted: ${result.accepted.join(', ') || '(none)'}`);
      if (result.rejected.length) print(`rejected: ${result.rejected.join(', ')}`);
      print(`server said: ${result.response}`);
      return result.rejected.length ? 1 : 0;
    }
    case 'cert':
      return runCertCommand(args, io);
    case 'queue':
      return runQueueCommand(args, io);
    case 'health':
      return runHealthCommand(args, io);
    case 'selftest':
      return runSelftestCommand(args, io);
    case 'doctor':
      return runDoctorCommand(args, io);
    case 'stats':
      return runStatsCommand(args, io);
    case 'dane':
      return runDaneCommand(args, io);
    case 'demo':
      parseCommandArgs({ args, options: {} }); // it takes no options: refuse one rather than ignore it
      return runDemo(io);
    case 'config':
      return runConfigCommand(args, io);
    case 'help':
    case '--help':
    case '-h':
      io.stdout.write(USAGE);
      return 0;
    default:
      throw new UsageError(`unknown command: ${command}`);
  }
}

export async function main(argv: string[], io: CliIo): Promise<number> {
  const [command, ...args] = argv;
  try {
    // Before dispatching, so that every command, also one added later, answers --help the same way.
    if (command === undefined) {
      io.stderr.write(USAGE);
      return 2;
    }
    if (command === '--version') {
      io.stdout.write(`mailproxy ${packageVersion()}\n`);
      return 0;
    }
    const helpFor = command === 'help' ? args[0] : !command.startsWith('-') && asksForHelp(args) ? command : undefined;
    if (helpFor !== undefined) {
      const usage = commandUsage(helpFor);
      if (!usage) throw new UsageError(`unknown command: ${helpFor}`);
      io.stdout.write(usage);
      return 0;
    }
    return await run(command, args, io);
  } catch (err) {
    const usageError = usageErrorMessage(err);
    if (usageError !== null) {
      io.stderr.write(`mailproxy: ${usageError}\n\n${(command && commandUsage(command)) || USAGE}`);
      return 2;
    }
    io.stderr.write(`mailproxy: ${(err as Error).message}\n`);
    return 1;
  }
}
