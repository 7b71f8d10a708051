// `mailproxy notes`: what the config still needs outside the VPS (the installer prints it too).
import { parseArgs } from 'node:util';
import type { CliIo } from '../cli';
import { loadConfigFile } from '../cli-support';
import { installNotes } from './notes';

export function runNotesCommand(args: string[], io: CliIo): number {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
  const loaded = loadConfigFile(values.config, io.stderr);
  if (!loaded) return 1;
  io.stdout.write(installNotes(loaded.config));
  return 0;
}
