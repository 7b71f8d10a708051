// `mailproxy health`: the CLI edge of the health checks. A Nagios plugin: exit 0 OK, 1 WARNING,
// 2 CRITICAL, 3 UNKNOWN. Anything that keeps it from checking (a usage error, a config that does not
// load, a textfile it cannot write) is UNKNOWN, never 2, so that a typo in a monitoring setup is not
// reported as a broken mail server.
import { parseArgs } from 'node:util';
import { loadConfigFile, resolveConfigPath } from '../command/config-file';
import type { Command, CommandIo } from '../command/io';
import { UsageError } from '../command/usage';
import { writeFileAtomic } from '../render/write';
import { formatHuman, formatJson, formatPrometheus } from './format';
import { runHealthChecks } from './run';
import { STATUS_CODE, worst } from '../report/status';

const UNKNOWN = STATUS_CODE.UNKNOWN;

function parse(argv: string[]) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      json: { type: 'boolean', default: false },
      prometheus: { type: 'string' },
    },
  });
  if (positionals.length) throw new UsageError(`unexpected argument: ${positionals[0]}`);
  if (values.prometheus === '') throw new UsageError('--prometheus needs a file name');
  return values;
}

/** A usage error is thrown: src/cli.ts prints it with the usage and exits UNKNOWN (exitStyle nagios). */
async function runHealthCommand(argv: string[], io: CommandIo): Promise<number> {
  const values = parse(argv);
  let loaded: ReturnType<typeof loadConfigFile>;
  try {
    loaded = loadConfigFile(values.config, io.stderr);
  } catch (err) {
    io.stderr.write(`mailproxy health UNKNOWN: ${(err as Error).message}\n`);
    return UNKNOWN;
  }
  if (!loaded) {
    io.stderr.write(`mailproxy health UNKNOWN: ${resolveConfigPath(values.config).file} is not a valid config (above); nothing was checked\n`);
    return UNKNOWN;
  }
  const report = await runHealthChecks(loaded.config, { env: io.env ?? process.env });
  let status = report.status;
  if (values.prometheus) {
    try {
      await writeFileAtomic(values.prometheus, formatPrometheus(report));
    } catch (err) {
      io.stderr.write(`mailproxy health: cannot write ${values.prometheus}: ${(err as Error).message}\n`);
      status = worst([status, 'UNKNOWN']);
    }
  }
  io.stdout.write(values.json ? formatJson(report) : formatHuman(report));
  return STATUS_CODE[status];
}

export const command: Command = {
  name: 'health',
  usage: [
    {
      synopsis: 'health --config FILE [--json] [--prometheus FILE]',
      about: [
        'both units, banners, STARTTLS and certificate, backend + XCLIENT,',
        'WireGuard handshake, queue, disk, kept mail (store_and_forward);',
        'exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (usage errors too);',
        '--prometheus writes a textfile',
      ],
    },
  ],
  details: `  exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the worst check wins: CRITICAL > WARNING > UNKNOWN > OK)
  --json             the report as JSON instead of one line per check
  --prometheus FILE  also write the result as a node_exporter textfile (atomically; name it *.prom)
`,
  exitStyle: 'nagios',
  run: runHealthCommand,
};
