// `mailproxy notes`: what the config still needs outside the VPS (the installer prints it too).
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../command/config-file';
import type { Command, CommandIo } from '../command/io';
import { tlsReportDkimRecord } from '../tls-report/dkim-key';
import { installNotes } from './notes';

async function runNotesCommand(args: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
  const loaded = loadConfigFile(values.config, io.stderr);
  if (!loaded) return 1;
  io.stdout.write(installNotes(loaded.config, await tlsReportDkimRecord(loaded.config)));
  return 0;
}

export const command: Command = {
  name: 'notes',
  usage: [{ synopsis: 'notes  --config FILE', about: ['the DNS records, backend settings and firewall rules the config needs'] }],
  exitStyle: 'plain',
  run: runNotesCommand,
};
