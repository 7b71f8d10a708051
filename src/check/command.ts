// `mailproxy check`: the config validated, the certificate on disk judged, and both rendered instances
// loaded by Haraka itself (run.ts); the report goes to stdout when it passes, to stderr when it fails.
import { parseArgs } from 'node:util';
import { readConfigFile } from '../command/config-file';
import type { Command, CommandIo } from '../command/io';
import { checkConfig } from './run';

async function runCheckCommand(args: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({ args, options: { config: { type: 'string' } } });
  const { text, source } = readConfigFile(values.config);
  const report = await checkConfig(text, source);
  (report.ok ? io.stdout : io.stderr).write(`${report.lines.join('\n')}\n`);
  return report.ok ? 0 : 1;
}

export const command: Command = {
  name: 'check',
  // Two spaces after the name: in `mailproxy --help` the options line up with render's, notes' and send's.
  usage: [{ synopsis: 'check  --config FILE', about: ['validate the config and have Haraka load both rendered instances'] }],
  exitStyle: 'plain',
  run: runCheckCommand,
};
