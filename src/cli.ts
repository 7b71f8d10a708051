// The `mailproxy` command. Thin: looks the command up in COMMANDS, prints help from the commands' own
// usage, and turns a usage error into exit 2 (3 for a Nagios-style command); returns an exit code (only
// the bin shim calls process.exit). Each command lives in src/<name>/command.ts and never imports this file.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { command as cert } from './certs/command';
import { command as check } from './check/command';
import { DEFAULT_CONFIG_PATH } from './command/config-file';
import { USAGE_ERROR_EXIT, type Command, type CommandIo } from './command/io';
import { entryLines, synopsisLine, usageErrorMessage, UsageError } from './command/usage';
import { command as config } from './configure/command';
import { command as dane } from './dane/command';
import { command as demo } from './demo/command';
import { command as doctor } from './doctor/command';
import { command as health } from './health/command';
import { command as mtaSts } from './mtasts-host/command';
import { command as notes } from './notes/command';
import { command as queue } from './queue/command';
import { command as render } from './render/command';
import { command as selftest } from './selftest/command';
import { command as send } from './send/command';
import { command as stats } from './stats/command';
import { command as tlsReport } from './tls-report/command';

/** Every command, in the order `mailproxy --help` lists them. */
const COMMANDS: readonly Command[] = [check, render, notes, send, cert, queue, health, selftest, doctor, dane, mtaSts, tlsReport, stats, demo, config];

const CONFIG_DEFAULT = `--config FILE defaults to $MAILPROXY_CONFIG, then ${DEFAULT_CONFIG_PATH}.`;

const NAGIOS = COMMANDS.filter((command) => command.exitStyle === 'nagios').map((command) => command.name);

const USAGE = `usage: mailproxy <command> [options]

commands:
${COMMANDS.flatMap((command) => command.usage.flatMap(entryLines)).join('\n')}

${CONFIG_DEFAULT}
\`mailproxy <command> --help\` prints one command's usage, \`mailproxy --version\` the version.
exit codes: 0 ok, 1 failed, 2 usage error; ${NAGIOS.join(', ')}: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (Nagios)
`;

function find(name: string | undefined): Command | undefined {
  return COMMANDS.find((command) => command.name === name);
}

/** One command's entries as `mailproxy <command> --help` prints them: USAGE's lines, after `mailproxy `. */
function commandHelp(command: Command): string {
  const lines = command.usage.flatMap((entry) => entryLines(entry).map((line, index) => (index === 0 ? `  mailproxy ${line.slice(2)}` : `${' '.repeat(10)}${line}`)));
  const configNote = lines.some((line) => line.includes('--config')) ? `\n${CONFIG_DEFAULT}\n` : '';
  return `usage:\n${lines.join('\n')}\n${configNote}`;
}

/**
 * What a mistake in a command line prints: the mistake, then the command's --help (the whole USAGE for
 * no command); a Nagios-style command names itself and prints its synopsis with each option explained.
 */
function usageErrorText(command: Command | undefined, message: string): string {
  if (command?.exitStyle === 'nagios') {
    return `mailproxy ${command.name}: ${message}\n\nusage: ${synopsisLine(command.usage)}\n${command.details ?? ''}`;
  }
  return `mailproxy: ${message}\n\n${command ? commandHelp(command) : USAGE}`;
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

export async function main(argv: string[], io: CommandIo): Promise<number> {
  const [name, ...args] = argv;
  const command = find(name);
  try {
    if (name === undefined) {
      io.stderr.write(USAGE);
      return 2;
    }
    if (name === '--version') {
      io.stdout.write(`mailproxy ${packageVersion()}\n`);
      return 0;
    }
    // Before running it, so that every command, also one added later, answers --help the same way.
    const helpFor = name === 'help' ? args[0] : !name.startsWith('-') && asksForHelp(args) ? name : undefined;
    if (helpFor !== undefined) {
      const asked = find(helpFor);
      if (!asked) throw new UsageError(`unknown command: ${helpFor}`);
      io.stdout.write(commandHelp(asked));
      return 0;
    }
    if (name === 'help' || name === '--help' || name === '-h') {
      io.stdout.write(USAGE);
      return 0;
    }
    if (!command) throw new UsageError(`unknown command: ${name}`);
    return await command.run(args, io);
  } catch (err) {
    const message = usageErrorMessage(err);
    if (message !== null) {
      io.stderr.write(usageErrorText(command, message));
      return USAGE_ERROR_EXIT[command?.exitStyle ?? 'plain'];
    }
    io.stderr.write(`mailproxy: ${(err as Error).message}\n`);
    return 1;
  }
}
