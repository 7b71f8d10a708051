// `mailproxy cert deploy|issue|renew`: routes to the deploy path (deploy/) and to native ACME (acme/).
import type { CliIo } from '../cli';
import { UsageError } from '../cli-support';
import { runAcmeCommand } from './acme/command';
import { runDeployCommand } from './deploy/command';

export async function runCertCommand(args: string[], io: CliIo): Promise<number> {
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
