// `mailproxy cert deploy|issue|renew`: routes to the deploy path (deploy/) and to native ACME (acme/).
import type { Command, CommandIo } from '../command/io';
import { UsageError } from '../command/usage';
import { ACME_USAGE_ENTRY, runAcmeCommand } from './acme/command';
import { DEPLOY_USAGE_ENTRY, runDeployCommand } from './deploy/command';

async function runCertCommand(args: string[], io: CommandIo): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'deploy':
      return runDeployCommand(rest, io);
    case 'issue':
    case 'renew':
      return runAcmeCommand(sub, rest, io);
    default:
      throw new UsageError(`usage: mailproxy cert deploy|issue|renew ... (got ${sub ?? 'nothing'})`);
  }
}

export const command: Command = {
  name: 'cert',
  usage: [DEPLOY_USAGE_ENTRY, ACME_USAGE_ENTRY],
  exitStyle: 'plain',
  run: runCertCommand,
};
