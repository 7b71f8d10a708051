// `mailproxy cert deploy`: parses its arguments, runs the one deploy path (deploy.ts) and prints its
// progress. Exit 0 when the certificate is deployed and served (or was already), 1 when it was refused,
// failed or rolled back.
import { parseArgs } from 'node:util';
import { loadConfigFile } from '../../command/config-file';
import type { CommandIo } from '../../command/io';
import { synopsisLine, UsageError, type UsageEntry } from '../../command/usage';
import { systemdRestarter } from './restart';
import { deployCertificate, DeployError } from './deploy';

export const DEPLOY_USAGE_ENTRY: UsageEntry = {
  synopsis: 'cert deploy --config FILE --key K --cert C [--chain CA] [--instances DIR] [--verify-timeout SECONDS]',
  about: [
    'validate a certificate, install it so Haraka never sees a mismatched',
    'pair, verify it is served over STARTTLS within --verify-timeout',
    '(default 30 s; rollback otherwise)',
  ],
};

/** The command line, in the message of a usage error. */
export const DEPLOY_USAGE = synopsisLine([DEPLOY_USAGE_ENTRY]);

export async function runDeployCommand(args: string[], io: CommandIo): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string' },
      key: { type: 'string' },
      cert: { type: 'string' },
      chain: { type: 'string' },
      instances: { type: 'string' },
      'verify-timeout': { type: 'string' },
    },
  });
  if (!values.key || !values.cert) throw new UsageError(`--key and --cert are required: ${DEPLOY_USAGE}`);
  let verifyTimeoutMs: number | undefined;
  if (values['verify-timeout'] !== undefined) {
    const seconds = Number(values['verify-timeout']);
    if (!Number.isFinite(seconds) || seconds < 1 || seconds > 600) throw new UsageError(`--verify-timeout expects seconds from 1 to 600, got ${values['verify-timeout']}`);
    verifyTimeoutMs = seconds * 1000;
  }
  const loaded = loadConfigFile(values.config, io.stderr);
  if (!loaded) return 1;
  const { config } = loaded;
  const log = (line: string) => io.stdout.write(`${line}\n`);
  try {
    await deployCertificate({
      config,
      keyFile: values.key,
      certFile: values.cert,
      ...(values.chain !== undefined ? { chainFile: values.chain } : {}),
      instancesDir: values.instances ?? config.system.instances_dir,
      log,
      ...(verifyTimeoutMs !== undefined ? { verifyTimeoutMs } : {}),
      restartHarakaOut: systemdRestarter(io.env ?? process.env),
    });
    return 0;
  } catch (err) {
    if (!(err instanceof DeployError)) throw err;
    const what = err.stage === 'refused' ? 'refused, nothing was changed' : err.stage === 'rolled back' ? 'failed and rolled back' : 'failed';
    io.stderr.write(`mailproxy cert deploy: ${what}: ${err.message}\n`);
    return 1;
  }
}
