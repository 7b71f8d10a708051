// `mailproxy health --config FILE [--json] [--prometheus FILE]`: the CLI edge of the health checks.
// A Nagios plugin: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. Anything that keeps it from checking
// (a usage error, a config that does not load, a textfile it cannot write) is UNKNOWN, never 2, so that a
// typo in a monitoring setup is not reported as a broken mail server.
import type { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { loadConfigFile, resolveConfigPath, usageErrorMessage, UsageError } from '../cli-support';
import { writeFileAtomic } from '../render/write';
import { formatHuman, formatJson, formatPrometheus } from './format';
import { runHealthChecks } from './run';
import { STATUS_CODE, worst } from './status';

export const HEALTH_USAGE = `usage: mailproxy health --config FILE [--json] [--prometheus FILE]
  exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (the worst check wins: CRITICAL > WARNING > UNKNOWN > OK)
  --json             the report as JSON instead of one line per check
  --prometheus FILE  also write the result as a node_exporter textfile (atomically; name it *.prom)
`;

export interface HealthIo {
  stdout: Writable;
  stderr: Writable;
  /** The environment systemctl and wg run with (their PATH); process.env when absent. */
  env?: NodeJS.ProcessEnv;
}

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

export async function runHealthCommand(argv: string[], io: HealthIo): Promise<number> {
  let values: ReturnType<typeof parse>;
  try {
    values = parse(argv);
  } catch (err) {
    const usage = usageErrorMessage(err);
    if (usage !== null) {
      io.stderr.write(`mailproxy health: ${usage}\n\n${HEALTH_USAGE}`);
      return UNKNOWN;
    }
    throw err;
  }
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
